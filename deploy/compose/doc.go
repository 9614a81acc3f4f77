// Package compose holds the Compose stack for cdnpilot (compose.yaml and its config files) and the tests that load and cross-check it without a Docker engine.
package compose
