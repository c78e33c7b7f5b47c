module github.com/datago-dev/datago

go 1.22

require golang.org/x/sync v0.11.0
