package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/apimeter/apimeter/moesif"
)

// BatchResult is a collector's answer to a batch.
type BatchResult struct {
	Stored     int `json:"stored"`
	Duplicates int `json:"duplicates"`
}

// PostBatch sends events to a collector's /v1/events/batch.
func PostBatch(ctx context.Context, client *http.Client, base, appID string, events []moesif.Event) (BatchResult, error) {
	body, err := json.Marshal(events)
	if err != nil {
		return BatchResult{}, err
	}
	return PostRaw(ctx, client, base, appID, body)
}

// PostRaw sends a JSON batch body to a collector's /v1/events/batch.
func PostRaw(ctx context.Context, client *http.Client, base, appID string, body []byte) (BatchResult, error) {
	return post(ctx, client, base+"/v1/events/batch", appID, body)
}

// PostProfiles sends user and company profiles with their metadata to a
// collector's /v1/users/batch and /v1/companies/batch, as Moesif's SDKs'
// updateUsersBatch and updateCompaniesBatch do.
func PostProfiles(ctx context.Context, client *http.Client, base, appID string, users []User) error {
	var us, cs []map[string]any
	seen := map[string]bool{}
	for i, u := range users {
		plan := []string{"pro", "starter", "enterprise"}[i%3]
		us = append(us, map[string]any{"user_id": u.ID, "company_id": u.Company, "metadata": map[string]any{
			"name": "User " + u.ID, "email": "user" + u.ID + "@" + u.Company + ".example", "plan": plan,
			"signed_up": time.Now().UTC().AddDate(0, -3-i%9, -i%27).Format("2006-01-02")}})
		if !seen[u.Company] {
			seen[u.Company] = true
			cs = append(cs, map[string]any{"company_id": u.Company, "company_domain": u.Company + ".example",
				"metadata": map[string]any{"name": strings.ToUpper(u.Company[:1]) + u.Company[1:], "plan": plan, "seats": 5 + 3*len(cs)}})
		}
	}
	for path, v := range map[string]any{"/v1/users/batch": us, "/v1/companies/batch": cs} {
		body, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := post(ctx, client, base+path, appID, body); err != nil {
			return err
		}
	}
	return nil
}

func post(ctx context.Context, client *http.Client, url, appID string, body []byte) (BatchResult, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return BatchResult{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Moesif-Application-Id", appID)
	resp, err := client.Do(req)
	if err != nil {
		return BatchResult{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return BatchResult{}, fmt.Errorf("collector answered %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	var res BatchResult
	if err := json.Unmarshal(b, &res); err != nil {
		return res, fmt.Errorf("collector answer: %w", err)
	}
	return res, nil
}
