// Package k8s holds cdnpilot's Kubernetes manifests (a kustomize base and an
// example overlay); its tests hold them to the Kubernetes API types, the
// cdnpilot command table and the strict config loader.
package k8s
