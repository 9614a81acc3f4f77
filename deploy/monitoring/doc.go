// Package monitoring holds cdnpilot's Prometheus rules and Grafana dashboards, and tests that they only use series cdnpilot exports.
package monitoring
