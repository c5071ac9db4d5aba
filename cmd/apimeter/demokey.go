package main

import (
	"fmt"

	"github.com/apimeter/apimeter/auth"
)

// demoKey is a read key the demo makes for its org, to print beside its
// example calls.
type demoKey struct {
	ID  string // for Guard.SignInToken (a one-time dashboard sign-in link)
	Key string
}

// newDemoKey creates a read key of org (all envs) in data directory dir.
func newDemoKey(dir, org string) (demoKey, error) {
	k, secret, err := auth.Create(dir, auth.Spec{Org: org, Scope: auth.ScopeRead, Name: "demo"})
	if err != nil {
		return demoKey{}, fmt.Errorf("demo key: %w", err)
	}
	return demoKey{ID: k.ID, Key: secret}, nil
}

// Env is the shell line that sets APIMETER_KEY, as the demo's curls use it.
func (k demoKey) Env() string { return "APIMETER_KEY=" + k.Key }

// CurlAuth is the curl option that sends the key.
const curlAuth = `-H "Authorization: Bearer $APIMETER_KEY"`
