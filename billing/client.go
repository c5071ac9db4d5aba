package billing

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Client is the billing API of a running server: a Source for a Pusher
// run outside the server (apimeter billing push).
type Client struct {
	Server string // e.g. http://127.0.0.1:7070
	Key    string // an admin key of the org
	HTTP   *http.Client
}

// Get reads path (under the org and env's billing/) with query q into
// out, or returns the body when out is nil.
func (c *Client) Get(ctx context.Context, org, env, path string, q url.Values, out any) ([]byte, error) {
	return c.do(ctx, "GET", org, env, path, q, nil, out)
}

func (c *Client) do(ctx context.Context, method, org, env, path string, q url.Values, body any, out any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := strings.TrimRight(c.Server, "/") + "/v1/o/" + url.PathEscape(org) + "/environments/" + url.PathEscape(env) + "/billing/" + path + "?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Key != "" {
		req.Header.Set("Authorization", "Bearer "+c.Key)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("is apimeter serve running at %s? %w", c.Server, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Message string } `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
			return nil, fmt.Errorf("%s billing/%s: %s", method, path, e.Error.Message)
		}
		return nil, fmt.Errorf("%s billing/%s: status %d", method, path, resp.StatusCode)
	}
	if out != nil && len(b) > 0 {
		return b, json.Unmarshal(b, out)
	}
	return b, nil
}

// PushPlan implements Source.
func (c *Client) PushPlan(ctx context.Context, org, env string, per Period) ([]Line, error) {
	var out struct{ Lines []Line }
	_, err := c.Get(ctx, org, env, "push-plan", url.Values{"period": {per.Name}}, &out)
	return out.Lines, err
}

// Record implements Source.
func (c *Client) Record(ctx context.Context, org, env string, per Period, e Entry) error {
	_, err := c.do(ctx, "POST", org, env, "ledger", url.Values{"period": {per.Name}}, e, nil)
	return err
}
