module github.com/apimeter/apimeter/sdktest/go

go 1.26.8

require (
	github.com/golang-jwt/jwt/v5 v5.3.1
	github.com/moesif/moesifapi-go v1.1.5
	github.com/moesif/moesifmiddleware-go v1.2.9
)

require golang.org/x/net v0.0.0-20210119194325-5f4716e94777 // indirect
