package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/weft-mesh/weft/api"
)

type diskACLOptions struct {
	*globals
	allow      []string
	initiators []string
	clear      bool
	json       bool
}

func newDiskACLCmd(g *globals) *cobra.Command {
	o := &diskACLOptions{globals: g}
	c := &cobra.Command{
		Use:   "acl NAME [--allow CIDR]... [--allow-initiator IQN]... [--clear]",
		Short: "Show or set who may open a disk over NBD and iSCSI",
		Long: `Show or set who may open a disk over NBD TCP and iSCSI.

With --allow, the list of client networks is replaced by the given ones
(CIDR such as 10.0.0.0/8, or a single address); it applies to NBD TCP
clients and iSCSI initiators alike. With --allow-initiator, the list of
iSCSI initiator names (iqn.…) that may log in to the disk's targets is
replaced. With --clear, both lists are emptied: any client that reaches
the listeners may open the disk. With none, the lists are shown.
Clients on the local NBD socket (HOME/nbd.sock) are always allowed.`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runDiskACL(c.Context(), o, args)
		},
	}
	f := c.Flags()
	f.StringArrayVar(&o.allow, "allow", nil, "allowed client network, CIDR (repeatable)")
	f.StringArrayVar(&o.initiators, "allow-initiator", nil, "allowed iSCSI initiator name, IQN (repeatable)")
	f.BoolVar(&o.clear, "clear", false, "allow any client")
	f.BoolVar(&o.json, "json", false, "print JSON")
	return c
}

func runDiskACL(ctx context.Context, o *diskACLOptions, args []string) error {
	if o.clear && (len(o.allow) > 0 || len(o.initiators) > 0) {
		return usageError{"disk acl: give --allow/--allow-initiator or --clear, not both"}
	}
	cl, err := o.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	name := args[0]
	var d api.DiskInfo
	if req, change := o.request(); change {
		d, err = cl.SetACL(ctx, name, req)
	} else {
		d, err = cl.DiskInfo(ctx, name)
	}
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(o.stdout, struct {
			Disk           string   `json:"disk"`
			Allow          []string `json:"allow"`
			Initiators     []string `json:"initiators"`
			CHAPUser       string   `json:"chap_user,omitempty"`
			CHAPTargetUser string   `json:"chap_target_user,omitempty"`
			CHAPMissing    bool     `json:"chap_missing,omitempty"`
		}{d.Name, append([]string{}, d.Allow...), append([]string{}, d.Initiators...), d.CHAPUser, d.CHAPTargetUser, d.CHAPMissing})
	}
	if len(d.Allow) == 0 {
		fmt.Fprintf(o.stdout, "%s: any client may open it over NBD and iSCSI\n", d.Name)
	} else {
		fmt.Fprintf(o.stdout, "%s: NBD and iSCSI clients allowed from %s\n", d.Name, strings.Join(d.Allow, " "))
	}
	if len(d.Initiators) > 0 {
		fmt.Fprintf(o.stdout, "%s: iSCSI initiators allowed: %s\n", d.Name, strings.Join(d.Initiators, " "))
	}
	if d.CHAPUser != "" || d.CHAPMissing {
		fmt.Fprintf(o.stdout, "%s: iSCSI CHAP %s\n", d.Name, chapText(d))
	}
	return nil
}

// request is the one change the flags ask for, both lists in one request
// so that they change together; change is false when they ask none.
func (o *diskACLOptions) request() (req api.ACLRequest, change bool) {
	if o.clear {
		return api.ACLRequest{Allow: &[]string{}, Initiators: &[]string{}}, true
	}
	if len(o.allow) > 0 {
		req.Allow = &o.allow
	}
	if len(o.initiators) > 0 {
		req.Initiators = &o.initiators
	}
	return req, req.Allow != nil || req.Initiators != nil
}

// chapText describes a disk's CHAP setting by its user names (the secrets
// never leave the daemon).
func chapText(d api.DiskInfo) string {
	switch {
	case d.CHAPMissing:
		// The previous owner's secrets stayed on it (they never travel).
		return "required, but no secret is set on this node: every iSCSI login is refused until `weft disk chap` sets one here"
	case d.CHAPUser == "":
		return "off"
	case d.CHAPTargetUser == "":
		return fmt.Sprintf("user %s (one-way)", d.CHAPUser)
	}
	return fmt.Sprintf("user %s, target user %s (mutual)", d.CHAPUser, d.CHAPTargetUser)
}
