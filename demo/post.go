package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

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
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/events/batch", bytes.NewReader(body))
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
