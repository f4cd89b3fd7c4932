package meshsim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/hashicorp/go-multierror"
	kubeyaml "k8s.io/apimachinery/pkg/util/yaml"

	"istio.io/istio/pilot/pkg/config/kube/crd"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/schema/collections"
	"istio.io/istio/pkg/config/schema/resource"
)

// parseAndValidate decodes Istio objects and runs each through the same
// validation istiod's webhook applies (pkg/config/validation, via the schema).
// Objects that fail are reported and left out: the API server would not have
// stored them.
func parseAndValidate(text string) (valid []config.Config, reports []ObjectReport, err error) {
	decoder := kubeyaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(text)), 512*1024)
	empty := crd.IstioKind{}
	for {
		obj := crd.IstioKind{}
		if err := decoder.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				return valid, reports, nil
			}
			return nil, nil, fmt.Errorf("cannot parse config: %w", err)
		}
		if reflect.DeepEqual(obj, empty) {
			continue
		}
		gvk := obj.GroupVersionKind()
		report := ObjectReport{
			Kind: obj.Kind, Namespace: obj.Namespace, Name: obj.Name,
			Errors: []string{}, Warnings: []string{},
		}
		if report.Namespace == "" {
			report.Namespace = "default"
		}
		s, ok := collections.PilotGatewayAPI().FindByGroupVersionAliasesKind(resource.FromKubernetesGVK(&gvk))
		if !ok {
			report.Errors = append(report.Errors, fmt.Sprintf("unknown kind %s", gvk))
			reports = append(reports, report)
			continue
		}
		cfg, err := crd.ConvertObject(s, &obj, "")
		if err != nil {
			report.Errors = append(report.Errors, err.Error())
			reports = append(reports, report)
			continue
		}
		if cfg.Namespace == "" {
			cfg.Namespace = "default"
		}
		warning, verr := validateOne(s, *cfg)
		report.Errors = append(report.Errors, splitErrors(verr)...)
		report.Warnings = append(report.Warnings, splitErrors(warning)...)
		reports = append(reports, report)
		if verr == nil {
			valid = append(valid, *cfg)
		}
	}
}

func splitErrors(err error) []string {
	if err == nil {
		return nil
	}
	var merr *multierror.Error
	if errors.As(err, &merr) {
		out := []string{}
		for _, e := range merr.Errors {
			out = append(out, splitErrors(e)...)
		}
		return out
	}
	return []string{strings.TrimSpace(err.Error())}
}

func validate(req Request) Response {
	_, reports, err := parseAndValidate(req.Config)
	if err != nil {
		return Response{Error: err.Error()}
	}
	if reports == nil {
		reports = []ObjectReport{}
	}
	return Response{Objects: reports}
}

// validateOne guards against schemas that carry no validation function.
func validateOne(s resource.Schema, cfg config.Config) (warning error, err error) {
	defer func() {
		if r := recover(); r != nil {
			warning, err = nil, fmt.Errorf("validation panicked: %v", r)
		}
	}()
	return s.ValidateConfig(cfg)
}
