package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/scrub"
)

// adminFlags are the flags of the commands that talk to a running server.
type adminFlags struct {
	Server string `default:"http://127.0.0.1:7070" env:"APIMETER_SERVER" help:"URL of the running apimeter server."`
	Org    string `required:"" env:"APIMETER_ORG" help:"Org the aliases or usage belong to."`
	Env    string `default:"prod" env:"APIMETER_ENV" help:"Environment."`
	// Not --key: the alias commands' --key is the key being aliased.
	APIMeterKey string `name:"apimeter-key" env:"APIMETER_KEY" help:"apimeter key of the org (admin for aliases, read for usage); see apimeter keys create."`
}

func (a adminFlags) call(ctx context.Context, method, path string, q url.Values, body any, out any) error {
	resp, err := a.do(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// do sends a request to the server and returns its answer when it is a
// success; an error answer becomes an error carrying the server's message.
func (a adminFlags) do(ctx context.Context, method, path string, q url.Values, body any) (*http.Response, error) {
	if q == nil {
		q = url.Values{}
	}
	q.Set("org", a.Org)
	q.Set("env", a.Env)
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(a.Server, "/")+path+"?"+q.Encode(), rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if a.APIMeterKey != "" {
		req.Header.Set("Authorization", "Bearer "+a.APIMeterKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("is apimeter serve running at %s? %w", a.Server, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e struct {
			Error struct{ Message string } `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
			return nil, fmt.Errorf("%s %s: %s", method, path, e.Error.Message)
		}
		return nil, fmt.Errorf("%s %s: status %d", method, path, resp.StatusCode)
	}
	return resp, nil
}

// keyRef is how a CLI command names a key: the key itself (hashed here, so
// it never leaves this process) or its hash.
type keyRef struct {
	Key     string `help:"The API key, token or client id; '-' reads it from stdin. Only its SHA-256 is sent."`
	KeyHash string `help:"The key's SHA-256 in hex, instead of --key."`
}

func (k keyRef) hash() (string, error) {
	switch {
	case k.Key == "-":
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		if line = strings.TrimSpace(line); line == "" {
			return "", errors.New("no key on stdin")
		}
		return scrub.KeyHash(line), nil
	case k.Key != "":
		return scrub.KeyHash(k.Key), nil
	case identity.ValidKeyHash(k.KeyHash):
		return k.KeyHash, nil
	case k.KeyHash != "":
		return "", errors.New("--key-hash must be 64 lower-case hex digits")
	}
	return "", errors.New("give --key or --key-hash")
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

type aliasesCmd struct {
	Put    aliasesPutCmd    `cmd:"" help:"Map an API key, token or client id to a user (and company)."`
	Get    aliasesGetCmd    `cmd:"" help:"Show the alias of a key."`
	Delete aliasesDeleteCmd `cmd:"" help:"Remove the alias of a key."`
	List   aliasesListCmd   `cmd:"" help:"List a user's aliases."`
}

type aliasesPutCmd struct {
	adminFlags
	keyRef
	User    string    `required:"" help:"User id the key belongs to."`
	Company string    `help:"Company id the key belongs to."`
	Expires time.Time `help:"When the key stops identifying its user (RFC 3339)."`
}

func (c *aliasesPutCmd) Run(ctx context.Context) error {
	h, err := c.hash()
	if err != nil {
		return err
	}
	body := identity.AliasJSON{Org: c.Org, Env: c.Env, KeyHash: h, UserID: c.User, CompanyID: c.Company}
	if !c.Expires.IsZero() {
		body.ExpiresAt = &c.Expires
	}
	var out identity.AliasJSON
	if err := c.call(ctx, "PUT", "/v1/aliases", nil, body, &out); err != nil {
		return err
	}
	return printJSON(out)
}

type aliasesGetCmd struct {
	adminFlags
	keyRef
}

func (c *aliasesGetCmd) Run(ctx context.Context) error {
	h, err := c.hash()
	if err != nil {
		return err
	}
	var out identity.AliasJSON
	if err := c.call(ctx, "GET", "/v1/aliases/"+h, nil, nil, &out); err != nil {
		return err
	}
	return printJSON(out)
}

type aliasesDeleteCmd struct {
	adminFlags
	keyRef
}

func (c *aliasesDeleteCmd) Run(ctx context.Context) error {
	h, err := c.hash()
	if err != nil {
		return err
	}
	var out map[string]string
	if err := c.call(ctx, "DELETE", "/v1/aliases/"+h, nil, nil, &out); err != nil {
		return err
	}
	return printJSON(out)
}

type aliasesListCmd struct {
	adminFlags
	User string `required:"" help:"User id."`
	listFormat
}

func (c *aliasesListCmd) Run(ctx context.Context) error {
	var out struct {
		Aliases []identity.AliasJSON `json:"aliases"`
	}
	if err := c.call(ctx, "GET", "/v1/aliases", url.Values{"user_id": {c.User}}, nil, &out); err != nil {
		return err
	}
	if c.JSON {
		return printJSONList(out.Aliases)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "KEY_ID\tUSER\tCOMPANY\tEXPIRES\tCREATED")
	for _, a := range out.Aliases {
		exp := "never"
		if a.ExpiresAt != nil {
			exp = a.ExpiresAt.Format(time.RFC3339)
			if a.Expired {
				exp += " (expired)"
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", a.KeyID, a.UserID, a.CompanyID, exp, a.CreatedAt.Format(time.RFC3339))
	}
	return w.Flush()
}

type usageCmd struct {
	adminFlags
	Period string `default:"current" help:"Billing period: YYYY-MM (the month it starts in), current or previous."`
	Group  string `default:"user_id" enum:"user_id,company_id,api_key_id" help:"Group by user_id, company_id or api_key_id."`
	JSON   bool   `help:"Print the answer as JSON."`
}

func (c *usageCmd) Run(ctx context.Context) error {
	var rep identity.Report
	if err := c.call(ctx, "GET", "/v1/usage", url.Values{"period": {c.Period}, "group": {c.Group}}, nil, &rep); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(rep)
	}
	fmt.Printf("usage of %s/%s, period %s [%s, %s), by %s\n", rep.Org, rep.Env, rep.Period,
		rep.Start.Format(time.RFC3339), rep.End.Format(time.RFC3339), rep.Group)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "ID\tCALLS\tERRORS\tBYTES\t")
	for _, r := range rep.Rows {
		id := r.ID
		if id == "" {
			id = "(anonymous)"
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t\n", id, r.Calls, r.Errors, r.Bytes)
	}
	fmt.Fprintf(w, "TOTAL\t%d\t%d\t%d\t\n", rep.Total.Calls, rep.Total.Errors, rep.Total.Bytes)
	return w.Flush()
}
