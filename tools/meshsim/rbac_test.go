package meshsim

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	httprbac "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbac "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"

	"istio.io/istio/pilot/pkg/simulation"
)

// peerInfo is what Envoy's RBAC filter sees of a connection.
type peerInfo struct {
	principal string // empty unless the connection is Istio mTLS
	sni       string
	port      int
	host      string
}

// authorize evaluates the RBAC filters of the matched filter chain, as Envoy
// would: the simulation walks routing only. Our evaluation covers the
// principal/namespace/SNI/port/host rules AuthorizationPolicies turn into;
// anything else is reported as unsupported and treated as not matching.
func (w *world) authorize(v *proxyView, r simulation.Result, call simulation.Call, peer *Proxy) *Authz {
	fc := chainNamed(v, r.ListenerMatched, r.FilterChainMatched)
	if fc == nil {
		return nil
	}
	info := peerInfo{sni: call.Sni, port: call.Port, host: call.HostHeader}
	if peer != nil && call.TLS == simulation.MTLS {
		info.principal = fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", w.trustDom, peer.Namespace, peer.ServiceAccount)
	}
	out := &Authz{Allowed: true, Filters: []AuthzFilter{}}
	ev := &evaluator{info: info}
	for _, rules := range rbacRules(fc) {
		f := AuthzFilter{Name: rules.name, Action: rules.rules.GetAction().String(), Policies: []string{}, Matched: []string{}}
		names := make([]string, 0, len(rules.rules.GetPolicies()))
		for n := range rules.rules.GetPolicies() {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			f.Policies = append(f.Policies, n)
			if ev.policy(rules.rules.GetPolicies()[n]) {
				f.Matched = append(f.Matched, n)
			}
		}
		switch rules.rules.GetAction() {
		case rbacpb.RBAC_ALLOW:
			if len(f.Matched) == 0 {
				out.Allowed = false
			}
		case rbacpb.RBAC_DENY:
			if len(f.Matched) > 0 {
				out.Allowed = false
			}
		}
		out.Filters = append(out.Filters, f)
	}
	out.Unsupported = ev.unsupported
	return out
}

type namedRules struct {
	name  string
	rules *rbacpb.RBAC
}

func rbacRules(fc *listener.FilterChain) []namedRules {
	var out []namedRules
	for _, f := range fc.GetFilters() {
		raw := f.GetTypedConfig()
		if raw == nil {
			continue
		}
		switch {
		case strings.HasSuffix(raw.GetTypeUrl(), "network.rbac.v3.RBAC"):
			cfg := &netrbac.RBAC{}
			if proto.Unmarshal(raw.GetValue(), cfg) == nil && cfg.GetRules() != nil {
				out = append(out, namedRules{f.GetName(), cfg.GetRules()})
			}
		case strings.HasSuffix(raw.GetTypeUrl(), "HttpConnectionManager"):
			m := &hcm.HttpConnectionManager{}
			if proto.Unmarshal(raw.GetValue(), m) != nil {
				continue
			}
			for _, hf := range m.GetHttpFilters() {
				hraw := hf.GetTypedConfig()
				if hraw == nil || !strings.HasSuffix(hraw.GetTypeUrl(), "http.rbac.v3.RBAC") {
					continue
				}
				cfg := &httprbac.RBAC{}
				if proto.Unmarshal(hraw.GetValue(), cfg) == nil && cfg.GetRules() != nil {
					out = append(out, namedRules{hf.GetName(), cfg.GetRules()})
				}
			}
		}
	}
	return out
}

type evaluator struct {
	info        peerInfo
	unsupported []string
}

func (e *evaluator) policy(p *rbacpb.Policy) bool {
	if p.GetCondition() != nil || p.GetCelConfig() != nil {
		e.unsupported = append(e.unsupported, "policy condition")
		return false
	}
	perm := false
	for _, x := range p.GetPermissions() {
		if e.permission(x) {
			perm = true
			break
		}
	}
	if !perm {
		return false
	}
	for _, x := range p.GetPrincipals() {
		if e.principal(x) {
			return true
		}
	}
	return false
}

func (e *evaluator) permission(p *rbacpb.Permission) bool {
	switch r := p.GetRule().(type) {
	case *rbacpb.Permission_Any:
		return r.Any
	case *rbacpb.Permission_AndRules:
		for _, x := range r.AndRules.GetRules() {
			if !e.permission(x) {
				return false
			}
		}
		return true
	case *rbacpb.Permission_OrRules:
		for _, x := range r.OrRules.GetRules() {
			if e.permission(x) {
				return true
			}
		}
		return false
	case *rbacpb.Permission_NotRule:
		return !e.permission(r.NotRule)
	case *rbacpb.Permission_RequestedServerName:
		return e.str(r.RequestedServerName, e.info.sni)
	case *rbacpb.Permission_DestinationPort:
		return int(r.DestinationPort) == e.info.port
	case *rbacpb.Permission_DestinationPortRange:
		return int32(e.info.port) >= r.DestinationPortRange.GetStart() && int32(e.info.port) < r.DestinationPortRange.GetEnd()
	case *rbacpb.Permission_Header:
		if n := r.Header.GetName(); n == ":authority" || n == "host" {
			if sm := r.Header.GetStringMatch(); sm != nil {
				return e.str(sm, e.info.host)
			}
		}
	}
	e.unsupported = append(e.unsupported, fmt.Sprintf("permission %T", p.GetRule()))
	return false
}

func (e *evaluator) principal(p *rbacpb.Principal) bool {
	switch r := p.GetIdentifier().(type) {
	case *rbacpb.Principal_Any:
		return r.Any
	case *rbacpb.Principal_AndIds:
		for _, x := range r.AndIds.GetIds() {
			if !e.principal(x) {
				return false
			}
		}
		return true
	case *rbacpb.Principal_OrIds:
		for _, x := range r.OrIds.GetIds() {
			if e.principal(x) {
				return true
			}
		}
		return false
	case *rbacpb.Principal_NotId:
		return !e.principal(r.NotId)
	case *rbacpb.Principal_Authenticated_:
		if e.info.principal == "" {
			return false
		}
		if r.Authenticated.GetPrincipalName() == nil {
			return true
		}
		return e.str(r.Authenticated.GetPrincipalName(), e.info.principal)
	case *rbacpb.Principal_FilterState:
		if r.FilterState.GetKey() == "io.istio.peer_principal" && r.FilterState.GetStringMatch() != nil {
			return e.info.principal != "" && e.str(r.FilterState.GetStringMatch(), e.info.principal)
		}
	}
	e.unsupported = append(e.unsupported, fmt.Sprintf("principal %T", p.GetIdentifier()))
	return false
}

func (e *evaluator) str(m *matcher.StringMatcher, v string) bool {
	if m.GetIgnoreCase() {
		v = strings.ToLower(v)
	}
	low := func(s string) string {
		if m.GetIgnoreCase() {
			return strings.ToLower(s)
		}
		return s
	}
	switch p := m.GetMatchPattern().(type) {
	case *matcher.StringMatcher_Exact:
		return v == low(p.Exact)
	case *matcher.StringMatcher_Prefix:
		return strings.HasPrefix(v, low(p.Prefix))
	case *matcher.StringMatcher_Suffix:
		return strings.HasSuffix(v, low(p.Suffix))
	case *matcher.StringMatcher_Contains:
		return strings.Contains(v, low(p.Contains))
	case *matcher.StringMatcher_SafeRegex:
		re, err := regexp.Compile("^(?:" + p.SafeRegex.GetRegex() + ")$")
		if err != nil {
			e.unsupported = append(e.unsupported, "regex "+p.SafeRegex.GetRegex())
			return false
		}
		return re.MatchString(v)
	}
	e.unsupported = append(e.unsupported, fmt.Sprintf("string matcher %T", m.GetMatchPattern()))
	return false
}
