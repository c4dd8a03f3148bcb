package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/api"
)

type diskCHAPOptions struct {
	*globals
	user, secretFile             string
	targetUser, targetSecretFile string
	clear                        bool
}

func newDiskCHAPCmd(g *globals) *cobra.Command {
	o := &diskCHAPOptions{globals: g}
	c := &cobra.Command{
		Use:   "chap NAME --user U --secret-file F [--target-user TU --target-secret-file TF] | --clear",
		Short: "Set or clear the CHAP secrets of a disk's iSCSI targets",
		Long: `Set or clear the CHAP secrets iSCSI initiators must prove to log in to
the disk's targets (the disk and its replicas).

--user and --secret-file are what the initiator logs in with (one-way
CHAP). With --target-user and --target-secret-file the target also
proves itself to initiators that ask (mutual CHAP), with a different
secret. Secrets are 12 to 255 bytes (RFC 7143 asks for at least 12; 16 or
more is better), read from files so that they stay out of shell history
and process lists; a trailing newline is dropped. They are stored in the
node's catalog (mode 0600) and never printed.`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runDiskCHAP(c.Context(), o, args)
		},
	}
	f := c.Flags()
	f.StringVar(&o.user, "user", "", "CHAP name of the initiator")
	f.StringVar(&o.secretFile, "secret-file", "", "file holding the initiator's CHAP secret")
	f.StringVar(&o.targetUser, "target-user", "", "CHAP name of the target, for mutual CHAP")
	f.StringVar(&o.targetSecretFile, "target-secret-file", "", "file holding the target's CHAP secret, for mutual CHAP")
	f.BoolVar(&o.clear, "clear", false, "turn CHAP off")
	return c
}

func readCHAPSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("chap secret: %w", err)
	}
	return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"), nil
}

func runDiskCHAP(ctx context.Context, o *diskCHAPOptions, args []string) error {
	var req api.CHAPRequest
	switch {
	case o.clear && (o.user != "" || o.secretFile != "" || o.targetUser != "" || o.targetSecretFile != ""):
		return usageError{"disk chap: give --clear alone"}
	case o.clear:
	case o.user == "" || o.secretFile == "":
		return usageError{"disk chap: give --user and --secret-file, or --clear"}
	case (o.targetUser == "") != (o.targetSecretFile == ""):
		return usageError{"disk chap: give both --target-user and --target-secret-file, or neither"}
	default:
		req.User = o.user
		var err error
		if req.Secret, err = readCHAPSecret(o.secretFile); err != nil {
			return err
		}
		if o.targetUser != "" {
			req.TargetUser = o.targetUser
			if req.TargetSecret, err = readCHAPSecret(o.targetSecretFile); err != nil {
				return err
			}
		}
	}
	cl, err := o.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	d, err := cl.SetCHAP(ctx, args[0], req)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.stdout, "%s: iSCSI CHAP %s\n", d.Name, chapText(d))
	return nil
}
