package portal

import "github.com/apimeter/apimeter/portal/token"

// The token package's names, as the portal's handlers use them.
type (
	Token    = token.Token
	Customer = token.Customer
	Tokens   = token.Tokens
	Spec     = token.Spec
)

// Kinds and pages, as package token defines them.
const (
	KindUser       = token.KindUser
	KindCompany    = token.KindCompany
	PageUsage      = token.PageUsage
	PageCalls      = token.PageCalls
	PageQuota      = token.PageQuota
	PageMeters     = token.PageMeters
	PageStatements = token.PageStatements
)

// Pages lists every page.
func Pages() []string { return token.Pages() }

// ErrNotFound: no token has that id.
var ErrNotFound = token.ErrNotFound

// SpecError is a bad token Spec.
type SpecError = token.SpecError
