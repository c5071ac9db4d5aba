package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"

	"github.com/apimeter/apimeter/export"
)

// exportCmd writes the stored events of a range to a Parquet or CSV file,
// through the running server (which holds the data directory's lock).
type exportCmd struct {
	adminFlags
	From   string `required:"" help:"First instant exported: RFC 3339 (2026-11-01T00:00:00Z) or a UTC date (2026-11-01)."`
	To     string `required:"" help:"First instant not exported (the range is [from, to))."`
	Format string `default:"parquet" enum:"parquet,csv" help:"parquet or csv (with a header line)."`
	Out    string `required:"" type:"path" placeholder:"FILE" help:"File to write; replaced only once the whole export has arrived."`
}

func (c *exportCmd) Run(ctx context.Context) error {
	for name, v := range map[string]string{"--from": c.From, "--to": c.To} {
		if _, err := export.ParseTime(v); err != nil {
			return fmt.Errorf("%s %s: %w", name, v, err)
		}
	}
	path := "/v1/o/" + url.PathEscape(c.Org) + "/environments/" + url.PathEscape(c.Env) + "/export"
	resp, err := c.do(ctx, "GET", path, url.Values{"from": {c.From}, "to": {c.To}, "format": {c.Format}}, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	tmp, err := os.CreateTemp(filepath.Dir(c.Out), "."+filepath.Base(c.Out)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename, nothing
	n, err := io.Copy(tmp, resp.Body)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("export to %s: %w", c.Out, err)
	}
	if err := os.Rename(tmp.Name(), c.Out); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "exported the events of %s/%s from %s to %s: %d bytes of %s in %s\n", c.Org, c.Env, c.From, c.To, n, c.Format, c.Out)
	return nil
}
