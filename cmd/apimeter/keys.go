package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/instance"
)

type keysCmd struct {
	Create keysCreateCmd `cmd:"" help:"Create a read or admin key for an org; prints the key alone on its last line (it is shown only this once)."`
	List   keysListCmd   `cmd:"" help:"List keys (never the keys themselves)."`
	Revoke keysRevokeCmd `cmd:"" help:"Revoke a key by its id; a running server stops accepting it within a second."`
}

type keysCreateCmd struct {
	Data string `default:"./apimeter-data" env:"APIMETER_DATA" help:"Data directory."`
	instance.StoreConfig
	Org   string   `required:"" help:"Org the key reads (and, with admin, administers)."`
	Env   []string `help:"Env the key is limited to (repeatable); none: every env of the org."`
	Scope string   `default:"read" enum:"read,admin" help:"read: Metrics API, events, usage, profiles, dashboard; admin: also aliases and keys."`
	Name  string   `help:"A name to recognise the key by in lists."`
}

func (c *keysCreateCmd) Run(ctx context.Context) error {
	cat, done, err := instance.OpenCatalog(ctx, c.StoreConfig, c.Data)
	if err != nil {
		return err
	}
	defer done()
	k, secret, err := cat.Keys.Create(auth.Spec{Org: c.Org, Envs: c.Env, Scope: c.Scope, Name: c.Name})
	if err != nil {
		return err
	}
	envs := "every env"
	if len(k.Envs) > 0 {
		envs = "env " + strings.Join(k.Envs, ", ")
	}
	fmt.Fprintf(os.Stderr, "created %s key %s for org %s, %s; it is shown only now. Send it as Authorization: Bearer KEY (or as the Basic password):\n", k.Scope, k.ID, k.Org, envs)
	fmt.Println(secret)
	return nil
}

type keysListCmd struct {
	Data string `default:"./apimeter-data" env:"APIMETER_DATA" help:"Data directory."`
	instance.StoreConfig
	Org string `help:"Only the keys of this org."`
	listFormat
}

func (c *keysListCmd) Run(ctx context.Context) error {
	if err := instance.ExistingDataDir(c.StoreConfig, c.Data); err != nil {
		return err
	}
	cat, done, err := instance.OpenCatalog(ctx, c.StoreConfig, c.Data)
	if err != nil {
		return err
	}
	defer done()
	keys := cat.Keys.List(c.Org)
	if c.JSON {
		return printJSONList(keys)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tORG\tENVS\tSCOPE\tNAME\tCREATED\tREVOKED")
	for _, k := range keys {
		envs, revoked := "*", "-"
		if len(k.Envs) > 0 {
			envs = strings.Join(k.Envs, ",")
		}
		if k.Revoked != nil {
			revoked = k.Revoked.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Org, envs, k.Scope, k.Name, k.Created.Format(time.RFC3339), revoked)
	}
	return w.Flush()
}

type keysRevokeCmd struct {
	Data string `default:"./apimeter-data" env:"APIMETER_DATA" help:"Data directory."`
	instance.StoreConfig
	ID string `arg:"" help:"Id of the key (see keys list)."`
}

func (c *keysRevokeCmd) Run(ctx context.Context) error {
	if err := instance.ExistingDataDir(c.StoreConfig, c.Data); err != nil {
		return err
	}
	cat, done, err := instance.OpenCatalog(ctx, c.StoreConfig, c.Data)
	if err != nil {
		return err
	}
	defer done()
	k, err := cat.Keys.Revoke("", c.ID)
	if err != nil {
		return fmt.Errorf("revoke %s: %w", c.ID, err)
	}
	fmt.Printf("revoked %s (org %s, %s, %s)\n", k.ID, k.Org, k.Scope, k.Revoked.Format(time.RFC3339))
	return nil
}
