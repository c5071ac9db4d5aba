package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/apimeter/apimeter/billing"
)

type billingCmd struct {
	Export    billingExportCmd    `cmd:"" help:"Usage per customer, meter and month (value and events counted), from a running server."`
	Push      billingPushCmd      `cmd:"" help:"Send a month's usage to Stripe Billing as meter events, only what was not sent yet."`
	Statement billingStatementCmd `cmd:"" help:"Write a customer's signed statement of a meter and month, with the events it counts."`
	Verify    billingVerifyCmd    `cmd:"" help:"Recompute a statement from the events of its customer export and check its signature."`
}

// billingFlags are the flags of the billing commands that talk to a
// running server.
type billingFlags struct {
	Server      string `default:"http://127.0.0.1:7070" env:"APIMETER_SERVER" help:"URL of the running apimeter server."`
	Org         string `required:"" env:"APIMETER_ORG" help:"Org billed."`
	Env         string `default:"prod" env:"APIMETER_ENV" help:"Environment."`
	APIMeterKey string `name:"apimeter-key" env:"APIMETER_KEY" help:"Admin key of the org; see apimeter keys create."`
	Period      string `required:"" help:"Billing period: a calendar month in UTC, YYYY-MM."`
}

func (f billingFlags) client() (*billing.Client, billing.Period, error) {
	per, err := billing.ParsePeriod(f.Period)
	if err != nil {
		return nil, per, fmt.Errorf("--period: %w", err)
	}
	return &billing.Client{Server: f.Server, Key: f.APIMeterKey}, per, nil
}

type billingExportCmd struct {
	billingFlags
	Format string `default:"csv" enum:"csv,json" help:"csv or json."`
}

func (c *billingExportCmd) Run(ctx context.Context) error {
	cl, per, err := c.client()
	if err != nil {
		return err
	}
	b, err := cl.Get(ctx, c.Org, c.Env, "export", url.Values{"period": {per.Name}, "format": {c.Format}}, nil)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(b)
	return err
}

type billingPushCmd struct {
	billingFlags
	StripeAPIKey  string `name:"stripe-api-key" env:"STRIPE_API_KEY" help:"Stripe secret key (sk_...); set STRIPE_API_KEY rather than the flag."`
	StripeAPIBase string `default:"https://api.stripe.com" help:"Stripe's API, or another endpoint serving it (stripe-mock)."`
}

func (c *billingPushCmd) Run(ctx context.Context) error {
	cl, per, err := c.client()
	if err != nil {
		return err
	}
	if c.StripeAPIKey == "" {
		return errors.New("set STRIPE_API_KEY to the Stripe secret key")
	}
	p := &billing.Pusher{Source: cl, APIBase: c.StripeAPIBase, APIKey: c.StripeAPIKey}
	res, err := p.Push(ctx, c.Org, c.Env, per)
	fmt.Printf("period %s: %d meter events sent (%d resent from an interrupted push), %d up to date\n", per.Name, res.Sent, res.Resent, res.UpToDate)
	if len(res.NoStripe) > 0 {
		fmt.Printf("not sent, no stripe_customer_id in the profile: %s\n", strings.Join(res.NoStripe, ", "))
	}
	if len(res.Decreased) > 0 {
		fmt.Printf("not sent, below what Stripe already has (correct it in Stripe): %s\n", strings.Join(res.Decreased, ", "))
	}
	if err != nil {
		return fmt.Errorf("%w (run the push again, within 24 hours: it resumes without billing twice)", err)
	}
	return nil
}

type billingStatementCmd struct {
	billingFlags
	Meter    string `required:"" help:"Meter slug."`
	Customer string `required:"" help:"Customer (the meter's subject)."`
	Out      string `short:"o" help:"Write to this file rather than stdout."`
}

func (c *billingStatementCmd) Run(ctx context.Context) error {
	cl, per, err := c.client()
	if err != nil {
		return err
	}
	b, err := cl.Get(ctx, c.Org, c.Env, "statement", url.Values{"period": {per.Name}, "meter": {c.Meter}, "customer": {c.Customer}}, nil)
	if err != nil {
		return err
	}
	if c.Out != "" {
		return os.WriteFile(c.Out, b, 0o644)
	}
	_, err = os.Stdout.Write(b)
	return err
}

type billingVerifyCmd struct {
	File      string `arg:"" type:"existingfile" help:"Customer export: a statement and its events (apimeter billing statement)."`
	PublicKey string `help:"The org's statement key (base64) to hold the statement to; without it, the key in the statement is used."`
	Against   string `type:"existingfile" help:"Another customer export of the same statement (the one first received, or the customer's own records in the same format): name each event added, removed or changed since."`
}

func (c *billingVerifyCmd) Run(ctx context.Context) error {
	b, err := os.ReadFile(c.File)
	if err != nil {
		return err
	}
	ce, err := billing.ReadCustomerExport(b)
	if err != nil {
		return fmt.Errorf("%s: %w", c.File, err)
	}
	s := ce.Statement
	diffs := billing.Verify(ce, c.PublicKey)
	if c.Against != "" {
		rb, err := os.ReadFile(c.Against)
		if err != nil {
			return err
		}
		ref, err := billing.ReadCustomerExport(rb)
		if err != nil {
			return fmt.Errorf("%s: %w", c.Against, err)
		}
		diffs = append(diffs, billing.Diff(ref.Events, ce.Events)...)
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%s: the statement of %s, meter %s, period %s does not match its events:\n  %s", c.File, s.Customer, s.Meter, s.Period, strings.Join(diffs, "\n  "))
	}
	fmt.Printf("%s: statement of %s, meter %s, period %s matches: value %v, %d events, digest %s, signed by %s\n",
		c.File, s.Customer, s.Meter, s.Period, s.Value, s.Events, s.Digest, s.PublicKey)
	return nil
}
