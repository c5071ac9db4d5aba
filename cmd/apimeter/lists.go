package main

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/apimeter/apimeter/alerts"
	"github.com/apimeter/apimeter/meter"
)

// listFormat is the --json flag of every list command: one JSON array on
// stdout (empty: []), of the same objects the HTTP API answers with, for
// scripts; without it, a table for people.
type listFormat struct {
	JSON bool `help:"Print the list as one JSON array (the objects the HTTP API answers with), for scripts."`
}

// printJSONList prints list as a JSON array; a nil slice prints [] so that
// a script never has to tell null from empty.
func printJSONList(list any) error {
	if v := reflect.ValueOf(list); v.Kind() == reflect.Slice && v.IsNil() {
		list = []any{}
	}
	return printJSON(list)
}

type metersCmd struct {
	List metersListCmd `cmd:"" help:"List the meters of an org and env, from a running server."`
}

type metersListCmd struct {
	adminFlags
	listFormat
}

func (c *metersListCmd) Run(ctx context.Context) error {
	var ms []meter.Meter
	if err := c.call(ctx, "GET", "/api/v1/meters", nil, nil, &ms); err != nil {
		return err
	}
	if c.JSON {
		return printJSONList(ms)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SLUG\tEVENT_TYPE\tAGGREGATION\tVALUE\tGROUP_BY\tSTRIPE")
	for _, m := range ms {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Slug, m.EventType, m.Aggregation, dash(m.ValueProperty),
			dash(strings.Join(slices.Sorted(maps.Keys(m.GroupBy)), ",")), dash(m.StripeEventName))
	}
	return w.Flush()
}

type alertsCmd struct {
	List alertsListCmd `cmd:"" help:"List the alert rules of an org and env with their state, from a running server."`
}

type alertsListCmd struct {
	adminFlags
	listFormat
}

func (c *alertsListCmd) Run(ctx context.Context) error {
	var out struct {
		Rules []alerts.RuleStatus `json:"rules"`
	}
	path := "/v1/o/" + url.PathEscape(c.Org) + "/environments/" + url.PathEscape(c.Env) + "/alerts/rules"
	if err := c.call(ctx, "GET", path, nil, nil, &out); err != nil {
		return err
	}
	if c.JSON {
		return printJSONList(out.Rules)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tKIND\tWHAT\tFIRING\tLAST_EVALUATION\tERROR")
	for _, r := range out.Rules {
		what := r.Metric
		if r.Meter != "" {
			what = "meter " + r.Meter
		}
		kind := r.Kind
		if kind == "" {
			kind = "threshold"
		}
		firing := 0
		for _, in := range r.Instances {
			if in.State == alerts.Firing {
				firing++
			}
		}
		last := "-"
		if !r.LastEval.IsZero() {
			last = r.LastEval.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\n", r.ID, kind, dash(what), firing, last, dash(r.Error+r.LastError))
	}
	return w.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
