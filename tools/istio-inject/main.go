// Command istio-inject serves Istio's own sidecar injection webhook (pkg/kube/inject),
// configured the way istiod is: the injection template, values and mesh config are the
// istio-sidecar-injector and istio ConfigMaps rendered from the module's istio-discovery
// chart. The e2e harness registers it like istiod's MutatingWebhookConfiguration, so test
// Pods get the proxy a real cluster would give them.
//
// It needs no cluster access: ENABLE_NATIVE_SIDECARS must be "true" or "false", because
// "auto" would ask the API server for the nodes' kubelet versions.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"istio.io/istio/operator/pkg/render"
	"istio.io/istio/pilot/pkg/features"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pkg/config/mesh"
	"istio.io/istio/pkg/config/mesh/meshwatcher"
	"istio.io/istio/pkg/kube/inject"
	"istio.io/istio/pkg/kube/multicluster"
)

// staticWatcher hands the webhook a configuration that never changes.
type staticWatcher struct {
	config *inject.Config
	values string
}

func (w staticWatcher) SetHandler(func(*inject.Config, string) error) {}
func (w staticWatcher) Run(<-chan struct{})                           {}
func (w staticWatcher) Get() (*inject.Config, string, error)          { return w.config, w.values, nil }

type settings struct {
	watcher staticWatcher
	mesh    string
	// istiod's MutatingWebhookConfiguration, as the chart renders it.
	webhook map[string]any
}

// renderSettings renders istiod's chart as `istioctl manifest generate` would and
// returns the data of the ConfigMaps istiod's injector reads.
func renderSettings(manifests, revision string) (settings, error) {
	flags := []string{
		"installPackagePath=" + manifests,
		"profile=empty",
		"components.pilot.enabled=true",
	}
	if revision != "default" {
		flags = append(flags, "revision="+revision)
	}
	sets, _, err := render.GenerateManifest(nil, flags, false, nil, nil)
	if err != nil {
		return settings{}, fmt.Errorf("rendering istio-discovery: %w", err)
	}
	injector := "istio-sidecar-injector"
	meshMap := "istio"
	if revision != "default" {
		injector += "-" + revision
		meshMap += "-" + revision
	}
	var out settings
	found := 0
	for _, set := range sets {
		for _, m := range set.Manifests {
			if m.GetKind() == "MutatingWebhookConfiguration" {
				out.webhook = m.Object
				continue
			}
			if m.GetKind() != "ConfigMap" {
				continue
			}
			data, _ := m.Object["data"].(map[string]any)
			switch m.GetName() {
			case injector:
				raw, _ := data["config"].(string)
				cfg, err := inject.UnmarshalConfig([]byte(raw))
				if err != nil {
					return settings{}, fmt.Errorf("%s config: %w", injector, err)
				}
				values, _ := data["values"].(string)
				out.watcher = staticWatcher{config: &cfg, values: values}
				found++
			case meshMap:
				out.mesh, _ = data["mesh"].(string)
				found++
			}
		}
	}
	if found != 2 || out.webhook == nil {
		return settings{}, fmt.Errorf("rendered chart lacks the %s or %s ConfigMap or the webhook", injector, meshMap)
	}
	return out, nil
}

func run() error {
	module := flag.String("module", "", "directory of the istio.io/istio module (holds manifests/)")
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to serve on")
	certFile := flag.String("cert", "", "serving certificate (PEM)")
	keyFile := flag.String("key", "", "serving key (PEM)")
	revision := flag.String("revision", "default", "the istio.io/rev this injector serves")
	printWebhook := flag.Bool("print-webhook", false,
		"print istiod's MutatingWebhookConfiguration for this revision as JSON and exit")
	flag.Parse()
	if *printWebhook {
		conf, err := renderSettings(filepath.Join(*module, "manifests"), *revision)
		if err != nil {
			return err
		}
		return json.NewEncoder(os.Stdout).Encode(conf.webhook)
	}
	if *module == "" || *certFile == "" || *keyFile == "" {
		return errors.New("-module, -cert and -key are required")
	}
	if features.EnableNativeSidecars == features.NativeSidecarModeAuto {
		return errors.New(`set ENABLE_NATIVE_SIDECARS to "true" or "false"`)
	}
	conf, err := renderSettings(filepath.Join(*module, "manifests"), *revision)
	if err != nil {
		return err
	}
	meshConfig, err := mesh.ApplyMeshConfig(conf.mesh, mesh.DefaultMeshConfig())
	if err != nil {
		return fmt.Errorf("mesh config: %w", err)
	}
	env := &model.Environment{Watcher: meshwatcher.NewTestWatcher(meshConfig)}
	env.SetPushContext(&model.PushContext{})
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	if _, err := inject.NewWebhook(inject.WebhookParameters{
		Watcher:      conf.watcher,
		Env:          env,
		Mux:          mux,
		Revision:     *revision,
		MultiCluster: multicluster.NewFakeController(),
	}); err != nil {
		return fmt.Errorf("injection webhook: %w", err)
	}
	server := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = server.Shutdown(context.Background())
	}()
	fmt.Fprintf(os.Stderr, "istio-inject: revision %s serving on %s\n", *revision, *listen)
	if err := server.ListenAndServeTLS(*certFile, *keyFile); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "istio-inject: %v\n", err)
		os.Exit(1)
	}
}
