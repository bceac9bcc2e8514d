// Package samples holds the example manifests of config/samples, in the order
// they apply (file name, then document order), for `make run` and the tests
// that prove they reach Ready.
package samples

import (
	"embed"
	"fmt"
	"io/fs"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

//go:embed 0*.yaml
var files embed.FS

// Objects decodes every sample.
func Objects() ([]*unstructured.Unstructured, error) {
	names, err := fs.Glob(files, "0*.yaml") // sorted: 01_entity.yaml first
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, name := range names {
		data, err := files.ReadFile(name)
		if err != nil {
			return nil, err
		}
		for _, doc := range strings.Split(string(data), "\n---\n") {
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if len(u.Object) > 0 {
				out = append(out, u)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no samples in config/samples")
	}
	return out, nil
}
