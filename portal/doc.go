// Package portal is apimeter's customer portal: tokens an org's admin key
// issues for one customer (a user id or a company id of one org and env),
// the JSON API such a token reads (that customer's usage, recent calls,
// quota headroom, and meters and statements where a server has them), and
// the page served at /portal/{org}/ that shows them inside an <iframe> of
// the provider's site. Every read is narrowed to the token's customer on
// the server, in the query plan, whatever the request asks for; a token
// carries no other power. docs/portal.md is the user's guide.
package portal
