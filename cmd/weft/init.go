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
	http   string
	force  bool
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
		Use:   "init [--site NAME] [--listen MULTIADDR]... [--nbd HOST:PORT] [--http HOST:PORT] [--cluster-secret-file F | --join-token TOKEN]",
		Short: "Create a node home: config and identity key",
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			return runInit(c.Context(), o, args)
		},
	}
	f := c.Flags()
	f.StringVar(&o.site, "site", def.Site, "failure-domain label of this node")
	f.StringArrayVar(&o.listen, "listen", def.Listen, "mesh listen multiaddr (repeatable)")
	f.StringVar(&o.nbd, "nbd", def.NBD, `NBD server address HOST:PORT ("" or "off": local socket only)`)
	f.StringVar(&o.nbdTLS.cert, "nbd-tls-cert", "", "PEM X.509 certificate offered to NBD clients (STARTTLS)")
	f.StringVar(&o.nbdTLS.key, "nbd-tls-key", "", "PEM private key of --nbd-tls-cert")
	f.BoolVar(&o.nbdTLS.required, "nbd-tls-required", false, "refuse NBD TCP clients that do not use TLS")
	f.StringVar(&o.http, "http", def.HTTP, `dashboard and /metrics address HOST:PORT ("off": none; off loopback a token is required, see HOME/http.token)`)
	f.BoolVar(&o.force, "force", false, "overwrite the config and identity of an existing home")
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
	id, err := node.Init(cfg, o.force, secret)
	if err != nil {
		return err
	}
	if err := node.SeedPeers(cfg, seeds); err != nil {
		return err
	}
	fmt.Fprintf(o.stdout, "initialized weft home %s\n  node  %s\n  site  %s\nstart it with: weft daemon --home %s\n", home, id.ID(), cfg.Site, home)
	return nil
}
