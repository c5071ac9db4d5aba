package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/apimeter/apimeter/instance"
	"github.com/apimeter/apimeter/portal"
	"github.com/apimeter/apimeter/portal/token"
)

type portalCmd struct {
	Token portalTokenCmd `cmd:"" help:"Manage customer portal tokens."`
}

type portalTokenCmd struct {
	Create portalTokenCreateCmd `cmd:"" help:"Create a portal token for one customer; prints the token alone on its last line (it is shown only this once)."`
	List   portalTokenListCmd   `cmd:"" help:"List portal tokens (never the tokens themselves)."`
	Revoke portalTokenRevokeCmd `cmd:"" help:"Revoke a portal token by its id; a running server refuses it within a second."`
}

type portalTokenCreateCmd struct {
	Data string `default:"./apimeter-data" env:"APIMETER_DATA" help:"Data directory."`
	instance.StoreConfig
	Org       string        `required:"" help:"Org of the customer."`
	Env       string        `default:"prod" help:"Environment the token reads."`
	UserID    string        `name:"user-id" xor:"customer" required:"" help:"The customer is this user id (the token reads the user's calls)."`
	CompanyID string        `name:"company-id" xor:"customer" required:"" help:"The customer is this company id (the token reads the calls of its users)."`
	TTL       time.Duration `default:"1h" help:"How long the token works (at most 2160h)."`
	Page      []string      `help:"Only these pages (repeatable): usage, calls, quota, meters, statements. None: all."`
	Meter     []string      `help:"Only these meters (repeatable). None: all."`
	Name      string        `help:"A name to recognise the token by in lists."`
}

func (c *portalTokenCreateCmd) Run(ctx context.Context) error {
	cat, done, err := instance.OpenCatalog(ctx, c.StoreConfig, c.Data)
	if err != nil {
		return err
	}
	defer done()
	spec, err := portal.SpecOf(portal.CreateRequest{Org: c.Org, Env: c.Env, UserID: c.UserID, CompanyID: c.CompanyID, Name: c.Name, Pages: c.Page, Meters: c.Meter})
	if err != nil {
		return err
	}
	spec.TTL = c.TTL
	t, secret, err := cat.Tokens.Create(ctx, spec)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "created portal token %s for %s %s of org %s, env %s, until %s; it is shown only now. Open /portal/%s/#token=TOKEN, or send it as Authorization: Bearer TOKEN to /portal/api/v1/:\n",
		t.ID, t.Customer.Kind, t.Customer.ID, t.Org, t.Env, t.Expires.Format(time.RFC3339), t.Org)
	fmt.Println(secret)
	return nil
}

type portalTokenListCmd struct {
	Data string `default:"./apimeter-data" env:"APIMETER_DATA" help:"Data directory."`
	instance.StoreConfig
	Org string `help:"Only the tokens of this org."`
	listFormat
}

func (c *portalTokenListCmd) Run(ctx context.Context) error {
	cat, done, err := instance.OpenCatalog(ctx, c.StoreConfig, c.Data)
	if err != nil {
		return err
	}
	defer done()
	toks, err := cat.Tokens.List(c.Org)
	if err != nil {
		return err
	}
	if c.JSON {
		return printJSONList(toks)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tORG\tENV\tCUSTOMER\tPAGES\tNAME\tCREATED\tEXPIRES\tREVOKED")
	for _, t := range toks {
		pages, revoked := "*", "-"
		if len(t.Pages) > 0 {
			pages = strings.Join(t.Pages, ",")
		}
		if t.Revoked != nil {
			revoked = t.Revoked.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s:%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Org, t.Env, t.Customer.Kind, t.Customer.ID, pages, t.Name,
			t.Created.Format(time.RFC3339), t.Expires.Format(time.RFC3339), revoked)
	}
	return w.Flush()
}

type portalTokenRevokeCmd struct {
	Data string `default:"./apimeter-data" env:"APIMETER_DATA" help:"Data directory."`
	instance.StoreConfig
	ID string `arg:"" help:"Id of the token (see portal token list)."`
}

func (c *portalTokenRevokeCmd) Run(ctx context.Context) error {
	cat, done, err := instance.OpenCatalog(ctx, c.StoreConfig, c.Data)
	if err != nil {
		return err
	}
	defer done()
	t, err := cat.Tokens.Revoke(ctx, "", c.ID)
	if errors.Is(err, token.ErrNotFound) {
		return fmt.Errorf("revoke %s: %w", c.ID, err)
	}
	if err != nil {
		return err
	}
	fmt.Printf("revoked %s (org %s, %s %s, %s)\n", t.ID, t.Org, t.Customer.Kind, t.Customer.ID, t.Revoked.Format(time.RFC3339))
	return nil
}
