// Package httpmsg reads and writes the messages of Azure API Management's
// log-to-eventhub policy (Azure API Management's log-to-eventhub policy): a first line "request:<message-id>" or
// "response:<message-id>", then an application/http message — request or
// status line, headers, an empty line and the body cut at 1024 characters.
// It drops Authorization and Ocp-Apim-Subscription-Key in both directions,
// whatever their case, and turns a request and its response into one
// apimeter.Event.
package httpmsg
