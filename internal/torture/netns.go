package torture

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// toolTimeout bounds every ip, tc, mount and iptables command.
const toolTimeout = 30 * time.Second

// runTool runs a system tool, bounded by toolTimeout.
func runTool(name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// sites is one network namespace per site, each joined to a bridge by a
// veth pair, as cmd/weft's bridgedSites: taking a site's host end down
// cuts it off, tbf on it slows it. Names carry the pid, so runs at once
// do not meet.
type sites struct {
	bridge     string
	namespaces []string
	hostDevs   []string
	innerDevs  []string
	ips        []string
	forward    bool // an iptables FORWARD rule was added for the bridge
}

// newSites builds n sites. On error it removes what it built.
func newSites(n int) (s *sites, err error) {
	id := os.Getpid() % 100000
	s = &sites{bridge: fmt.Sprintf("wt%db", id)}
	defer func() {
		if err != nil {
			s.remove()
		}
	}()
	if err := runTool("ip", "link", "add", s.bridge, "type", "bridge"); err != nil {
		return nil, err
	}
	if err := runTool("ip", "link", "set", s.bridge, "up"); err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("iptables"); err == nil {
		// dockerd's FORWARD policy DROP would meet the bridged frames.
		if err := runTool("iptables", "-I", "FORWARD", "-i", s.bridge, "-o", s.bridge, "-j", "ACCEPT"); err == nil {
			s.forward = true
		}
	}
	for i := range n {
		ns := fmt.Sprintf("weft-torture-%d-%d", id, i)
		host, inner := fmt.Sprintf("wt%dh%d", id, i), fmt.Sprintf("wt%dn%d", id, i)
		ip := fmt.Sprintf("10.237.%d.%d", id%250, 10+i)
		if err := runTool("ip", "netns", "add", ns); err != nil {
			return nil, err
		}
		s.namespaces = append(s.namespaces, ns)
		if err := runTool("ip", "link", "add", host, "type", "veth", "peer", "name", inner); err != nil {
			return nil, err
		}
		s.hostDevs, s.innerDevs, s.ips = append(s.hostDevs, host), append(s.innerDevs, inner), append(s.ips, ip)
		for _, args := range [][]string{
			{"ip", "link", "set", inner, "netns", ns},
			{"ip", "link", "set", host, "master", s.bridge, "up"},
			{"ip", "-n", ns, "addr", "add", ip + "/24", "dev", inner},
			{"ip", "-n", ns, "link", "set", inner, "up"},
			{"ip", "-n", ns, "link", "set", "lo", "up"},
		} {
			if err := runTool(args[0], args[1:]...); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// cut takes site i's link down; rejoin brings it up.
func (s *sites) cut(i int) error    { return runTool("ip", "link", "set", s.hostDevs[i], "down") }
func (s *sites) rejoin(i int) error { return runTool("ip", "link", "set", s.hostDevs[i], "up") }

// slow caps site i's link at mbit Mbit/s each way with tbf; unslow
// removes the caps.
func (s *sites) slow(i, mbit int) error {
	rate := fmt.Sprintf("%dmbit", mbit)
	if err := runTool("tc", "qdisc", "replace", "dev", s.hostDevs[i], "root", "tbf", "rate", rate, "burst", "32kb", "latency", "100ms"); err != nil {
		return err
	}
	return runTool("ip", "netns", "exec", s.namespaces[i], "tc", "qdisc", "replace", "dev", s.innerDevs[i], "root", "tbf", "rate", rate, "burst", "32kb", "latency", "100ms")
}

func (s *sites) unslow(i int) error {
	err1 := runTool("tc", "qdisc", "del", "dev", s.hostDevs[i], "root")
	err2 := runTool("ip", "netns", "exec", s.namespaces[i], "tc", "qdisc", "del", "dev", s.innerDevs[i], "root")
	if err1 != nil {
		return err1
	}
	return err2
}

// remove deletes the sites, best effort.
func (s *sites) remove() {
	for _, h := range s.hostDevs {
		runTool("ip", "link", "del", h)
	}
	for _, ns := range s.namespaces {
		runTool("ip", "netns", "del", ns)
	}
	if s.forward {
		runTool("iptables", "-D", "FORWARD", "-i", s.bridge, "-o", s.bridge, "-j", "ACCEPT")
	}
	runTool("ip", "link", "del", s.bridge)
}
