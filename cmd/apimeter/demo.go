package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"text/tabwriter"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/workload"
)

type demoCmd struct {
	serverFlags
	Org    string        `default:"demo" help:"Org of the demo traffic."`
	Env    string        `default:"prod" help:"Environment of the demo traffic."`
	Events int           `default:"20000" help:"Events to generate."`
	Span   time.Duration `default:"720h" help:"Spread the generated calls over this long before now."`
	Exit   bool          `help:"Exit after showing the figures instead of serving until Ctrl-C."`
}

func (c *demoCmd) Run(ctx context.Context) error {
	in, err := start(ctx, c.serverFlags)
	if err != nil {
		return err
	}
	defer in.Close()

	appID := ""
	for _, a := range in.Apps.List() {
		if a.Org == c.Org && a.Env == c.Env {
			appID = a.ID
		}
	}
	if appID == "" {
		a, err := apps.Create(c.Data, c.Org, c.Env)
		if err != nil {
			return err
		}
		appID = a.ID
	}

	key, err := newDemoKey(c.Data, c.Org)
	if err != nil {
		return err
	}

	fmt.Printf("apimeter demo: sending %d generated API calls to %s (org %s, env %s)\n", c.Events, in.URL, c.Org, c.Env)
	gen := workload.New(uint64(time.Now().UnixNano()), c.Span)
	began := time.Now()
	stored, dups := 0, 0
	for sent := 0; sent < c.Events; {
		n := min(500, c.Events-sent)
		res, err := postBatch(ctx, http.DefaultClient, in.URL, appID, gen.Batch(n))
		if err != nil {
			return err
		}
		stored += res.Stored
		dups += res.Duplicates
		sent += n
	}
	fmt.Printf("stored %d events (%d duplicates) in %v\n\n", stored, dups, time.Since(began).Round(time.Millisecond))

	if err := showUsage(ctx, in, c.Org, c.Env); err != nil {
		return err
	}
	// The same questions through the Apigee-compatible Metrics API.
	tr := time.Now().Add(-c.Span-24*time.Hour).UTC().Format("01/02/2006 15:04") + "~" + time.Now().Add(24*time.Hour).UTC().Format("01/02/2006 15:04")
	statsURL := fmt.Sprintf("%s/v1/o/%s/environments/%s/stats/user_id?select=sum(message_count),avg(total_response_time)&timeRange=%s&sortby=sum(message_count)&topk=3",
		in.URL, c.Org, c.Env, url.QueryEscape(tr))
	if answer, err := httpGet(ctx, statsURL, key.Key); err == nil {
		fmt.Printf("\nTop 3 users through the Metrics API (%s):\n%s\n", "GET /v1/o/"+c.Org+"/environments/"+c.Env+"/stats/user_id?select=sum(message_count),...&topk=3", answer)
	} else {
		return err
	}

	fmt.Printf("\nTry it (a read key of org %s, shown only now):\n", c.Org)
	fmt.Printf("  %s\n", key.Env())
	fmt.Printf("  curl -s %s '%s/v1/o/%s/environments/%s/events?limit=5'\n", curlAuth, in.URL, c.Org, c.Env)
	fmt.Printf("  curl -s %s '%s/v1/o/%s/environments/%s/events?user_id=513&errors=true&limit=5'\n", curlAuth, in.URL, c.Org, c.Env)
	fmt.Printf("  curl -s -u \"me:$APIMETER_KEY\" '%s/v1/o/%s/environments/%s/stats/apiproxy?select=sum(message_count),sum(is_error)&timeUnit=day&timeRange=%s'\n", in.URL, c.Org, c.Env, url.QueryEscape(tr))
	fmt.Printf("  curl -s %s '%s/v1/o/%s/environments/%s/stats/route?select=p95(total_response_time)&filter=(apiproxy%%20eq%%20%%27payments%%27)&timeRange=%s'\n", curlAuth, in.URL, c.Org, c.Env, url.QueryEscape(tr))
	fmt.Printf("  application id (X-Moesif-Application-Id): %s\n", appID)
	if c.Exit {
		return nil
	}
	fmt.Printf("\nServing on %s until Ctrl-C.\n", in.URL)
	select {
	case <-ctx.Done():
	case err := <-in.done:
		return err
	}
	return nil
}

// showUsage prints the "usage by user id" segmentation of the guide and the
// busiest routes, straight from the store.
func showUsage(ctx context.Context, in *instance, org, env string) error {
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	rows, err := in.Store.DB().QueryContext(ctx, `
SELECT user_id, company_id, sum(weight) AS calls,
       sum(CASE WHEN `+apimeter.IsErrorSQL+` THEN weight ELSE 0 END) AS errors,
       round(quantile_cont(latency_ms, 0.95), 1) AS p95
FROM events WHERE org = ? AND env = ? GROUP BY ALL ORDER BY calls DESC, user_id LIMIT 10`, org, env)
	if err != nil {
		return err
	}
	fmt.Fprintln(tw, "user_id\tcompany_id\tcalls\terrors\tp95 ms\t")
	for rows.Next() {
		var user, company string
		var calls, errs int64
		var p95 float64
		if err := rows.Scan(&user, &company, &calls, &errs, &p95); err != nil {
			rows.Close()
			return err
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.1f\t\n", user, company, calls, errs, p95)
	}
	rows.Close()
	fmt.Println("Usage by user id:")
	tw.Flush()

	rows, err = in.Store.DB().QueryContext(ctx, `
SELECT api_name, method, route, sum(weight) AS calls, round(avg(latency_ms), 1)
FROM events WHERE org = ? AND env = ? GROUP BY ALL ORDER BY calls DESC LIMIT 10`, org, env)
	if err != nil {
		return err
	}
	defer rows.Close()
	fmt.Fprintln(tw, "\napi\tmethod\troute\tcalls\tavg ms\t")
	for rows.Next() {
		var api, method, route string
		var calls int64
		var avg float64
		if err := rows.Scan(&api, &method, &route, &calls, &avg); err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.1f\t\n", api, method, route, calls, avg)
	}
	fmt.Println("\nBusiest routes:")
	return tw.Flush()
}

// httpGet returns the body of a GET with key as a Bearer token, or an
// error naming the status.
func httpGet(ctx context.Context, u, key string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", u, resp.Status, bytes.TrimSpace(b))
	}
	return string(bytes.TrimSpace(b)), nil
}

type batchResult struct {
	Stored     int `json:"stored"`
	Duplicates int `json:"duplicates"`
}

// postBatch sends events to a collector's /v1/events/batch.
func postBatch(ctx context.Context, client *http.Client, base, appID string, events []apimeter.MoesifEvent) (batchResult, error) {
	body, err := json.Marshal(events)
	if err != nil {
		return batchResult{}, err
	}
	return postRaw(ctx, client, base, appID, body)
}

func postRaw(ctx context.Context, client *http.Client, base, appID string, body []byte) (batchResult, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/events/batch", bytes.NewReader(body))
	if err != nil {
		return batchResult{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Moesif-Application-Id", appID)
	resp, err := client.Do(req)
	if err != nil {
		return batchResult{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return batchResult{}, fmt.Errorf("collector answered %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	var res batchResult
	if err := json.Unmarshal(b, &res); err != nil {
		return res, fmt.Errorf("collector answer: %w", err)
	}
	return res, nil
}
