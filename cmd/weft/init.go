package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/node"
)

type initOptions struct {
	*globals
	site   string
	listen []string
	nbd    string
	iscsi  string
	http   string
	force  bool
	fresh  struct {
		identity, secret bool
	}
	nbdTLS struct {
		cert, key string
		required  bool
	}
	secretFile string
	joinToken  string
}

func newInitCmd(g *globals) *cobra.Command {
	def := node.DefaultConfig()
	o := &initOptions{globals: g}
	c := &cobra.Command{
		Use:   "init [--site NAME] [--listen MULTIADDR]... [--nbd HOST:PORT] [--iscsi HOST:PORT] [--http HOST:PORT] [--cluster-secret-file F | --join-token TOKEN]",
		Short: "Create a node home: config and identity key",
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			if !c.Flags().Changed("nbd") {
				o.nbd = node.OnListenHost(o.listen, o.nbd)
			}
			if !c.Flags().Changed("http") {
				o.http = node.OnListenHost(o.listen, o.http)
			}
			return runInit(c.Context(), o, args)
		},
	}
	f := c.Flags()
	f.StringVar(&o.site, "site", def.Site, "failure-domain label of this node")
	f.StringArrayVar(&o.listen, "listen", def.Listen, "mesh listen multiaddr (repeatable; port 0: the first start picks a port and records it)")
	f.StringVar(&o.nbd, "nbd", def.NBD, `NBD server address HOST:PORT ("" or "off": local socket only; default on the host of the first --listen if it is loopback)`)
	f.StringVar(&o.iscsi, "iscsi", "", `iSCSI target address HOST:PORT (3260 is the usual port; "" or "off": none, the default)`)
	f.StringVar(&o.nbdTLS.cert, "nbd-tls-cert", "", "PEM X.509 certificate offered to NBD clients (STARTTLS)")
	f.StringVar(&o.nbdTLS.key, "nbd-tls-key", "", "PEM private key of --nbd-tls-cert")
	f.BoolVar(&o.nbdTLS.required, "nbd-tls-required", false, "refuse NBD TCP clients that do not use TLS")
	f.StringVar(&o.http, "http", def.HTTP, `dashboard and /metrics address HOST:PORT ("off": none; off loopback a token is required, see HOME/http.token; default on the host of the first --listen if it is loopback)`)
	f.BoolVar(&o.force, "force", false, "overwrite the config of an existing home (its identity and cluster secret are kept)")
	f.BoolVar(&o.fresh.identity, "new-identity", false, "with --force: replace the home's identity key (a new peer ID)")
	f.BoolVar(&o.fresh.secret, "new-secret", false, "with --force: replace the home's cluster secret with a fresh one (a new mesh)")
	f.StringVar(&o.secretFile, "cluster-secret-file", "", "join an existing mesh: its secret (the file cluster.secret of any member's home); without it, init makes a new mesh")
	f.StringVar(&o.joinToken, "join-token", "", "join an existing mesh with a token from weft token on a member: its secret, and the member the first start joins")
	return c
}

func runInit(ctx context.Context, o *initOptions, args []string) error {
	home, err := o.homeDir()
	if err != nil {
		return err
	}
	cfg := node.DefaultConfig()
	cfg.Home = home
	cfg.Site = o.site
	cfg.Listen = o.listen
	cfg.NBD = o.nbd
	if cfg.NBD == "off" {
		cfg.NBD = ""
	}
	if cfg.ISCSI = o.iscsi; cfg.ISCSI == "off" {
		cfg.ISCSI = ""
	}
	cfg.NBDTLSCert, cfg.NBDTLSKey, cfg.NBDTLSRequired = o.nbdTLS.cert, o.nbdTLS.key, o.nbdTLS.required
	cfg.HTTP = o.http
	if cfg.HTTP == "off" {
		cfg.HTTP = ""
	}
	var secret string
	var seeds []string
	if o.joinToken != "" {
		if o.secretFile != "" {
			return usageError{"init: give --join-token or --cluster-secret-file, not both"}
		}
		if secret, seeds, err = node.ParseJoinToken(o.joinToken); err != nil {
			return usageError{err.Error()}
		}
	}
	if o.secretFile != "" {
		b, err := os.ReadFile(o.secretFile)
		if err != nil {
			return usageError{fmt.Sprintf("--cluster-secret-file: %v", err)}
		}
		if _, err := node.ParseClusterSecret(string(b)); err != nil {
			return usageError{fmt.Sprintf("%s: %v", o.secretFile, err)}
		}
		secret = string(b)
	}
	if (o.fresh.identity || o.fresh.secret) && !o.force {
		return usageError{"init: --new-identity and --new-secret replace what an existing home holds: give --force too"}
	}
	if o.fresh.secret && secret != "" {
		return usageError{"init: give --new-secret or a secret to join (--cluster-secret-file, --join-token), not both"}
	}
	res, err := node.Init(cfg, node.InitOptions{Force: o.force, NewIdentity: o.fresh.identity, NewSecret: o.fresh.secret, Secret: secret})
	if err != nil {
		return err
	}
	if err := node.SeedPeers(cfg, seeds); err != nil {
		return err
	}
	fmt.Fprintf(o.stdout, "initialized weft home %s\n  node  %s\n  site  %s\n", home, res.Identity.ID(), cfg.Site)
	if res.KeptIdentity {
		fmt.Fprintf(o.stdout, "  kept  %s (the same peer ID; --new-identity replaces it)\n", node.IdentityFile)
	}
	if res.KeptSecret {
		fmt.Fprintf(o.stdout, "  kept  %s (the same mesh; --new-secret replaces it)\n", node.ClusterSecretFile)
	}
	fmt.Fprintf(o.stdout, "start it with: weft daemon --home %s\n", home)
	return nil
}
