// Package e2e runs pci-segment for real: the built binary enforces policies
// on veth pairs in network namespaces that the tests create (package lab),
// and the tests send traffic through them. The tests need root; with
// PCI_SEGMENT_E2E=1 a missing prerequisite fails instead of skipping.
package e2e
