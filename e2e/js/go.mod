// This go.mod only fences node_modules off from the cdnpilot module, so that
// `go list ./...` and `go vet ./...` never see a Go file an npm package
// might ship. There is no Go code here.
module github.com/cdnpilot/cdnpilot/e2e/js

go 1.26
