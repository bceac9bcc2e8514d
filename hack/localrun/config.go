package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

func clientConfig(path string) (*rest.Config, error) {
	return clientcmd.BuildConfigFromFlags("", path)
}

// operatorServiceAccount is the operator's username: config/rbac binds its
// ClusterRole to it, and config/policies admits its namespace deletions.
const operatorServiceAccount = "system:serviceaccount:visio-system:visio-operator"

// installManifests creates the objects of the files, in order, as the
// cluster administrator (the namespace of the service account first).
func installManifests(ctx context.Context, kubeconfig string, files []string) error {
	restCfg, err := clientConfig(kubeconfig)
	if err != nil {
		return err
	}
	c, err := client.New(restCfg, client.Options{})
	if err != nil {
		return err
	}
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName("visio-system")
	if err := c.Create(ctx, ns); client.IgnoreAlreadyExists(err) != nil {
		return fmt.Errorf("cannot create namespace visio-system: %w", err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		for _, doc := range strings.Split(string(data), "\n---\n") {
			obj := &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			if len(obj.Object) == 0 {
				continue
			}
			if err := c.Create(ctx, obj); client.IgnoreAlreadyExists(err) != nil {
				return fmt.Errorf("%s: cannot create %s %s: %w", file, obj.GetKind(), obj.GetName(), err)
			}
		}
	}
	return nil
}
