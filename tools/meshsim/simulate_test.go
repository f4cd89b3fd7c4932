package meshsim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	proxyprotocol "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/proxy_protocol/v3"
	tls "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	kubeyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/pkg/simulation"
	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pkg/config/mesh"
)

// maxLegs bounds gateway chaining (sidecar -> gateway -> gateway ...).
const maxLegs = 4

// outsideAddress is where an external name resolves when the call names none:
// an address no mesh object owns.
const outsideAddress = "203.0.113.10"

type world struct {
	t        *testing.T
	server   *xds.FakeDiscoveryServer
	proxies  map[string]*Proxy
	trustDom string
	sims     map[string]*proxyView
}

// proxyView is the config one proxy receives, built once per request.
type proxyView struct {
	proxy     *Proxy
	sim       *simulation.Simulation
	clusters  map[string]*cluster.Cluster
	endpoints map[string][]string
}

func simulate(t *testing.T, req Request) Response {
	valid, reports, err := parseAndValidate(req.Config)
	if err != nil {
		return Response{Error: err.Error()}
	}
	var rejected []ObjectReport
	for _, r := range reports {
		if len(r.Errors) > 0 {
			rejected = append(rejected, r)
		}
	}
	gatewayAPI, err := gatewayAPIObjects(req.Config, rejected)
	if err != nil {
		return Response{Error: err.Error()}
	}
	kubeText, err := normalizeKube(req.Kube + "\n---\n" + gatewayAPI)
	if err != nil {
		return Response{Error: err.Error()}
	}
	synth, err := synthesize(req.Proxies, kubeText)
	if err != nil {
		return Response{Error: err.Error()}
	}
	opts := xds.FakeOptions{
		Configs:                valid,
		KubernetesObjectString: kubeText,
		KubernetesObjects:      synth,
	}
	m := mesh.DefaultMeshConfig()
	if req.Mesh != "" {
		if m, err = mesh.ApplyMeshConfigDefaults(req.Mesh); err != nil {
			return Response{Error: "mesh config: " + err.Error()}
		}
	}
	opts.MeshConfig = m
	w := &world{
		t:        t,
		server:   xds.NewFakeDiscoveryServer(t, opts),
		proxies:  map[string]*Proxy{},
		trustDom: m.GetTrustDomain(),
		sims:     map[string]*proxyView{},
	}
	for i := range req.Proxies {
		p := &req.Proxies[i]
		if p.ServiceAccount == "" {
			p.ServiceAccount = "default"
		}
		w.proxies[p.Name] = p
	}
	results := make([]CallResult, 0, len(req.Calls))
	for _, c := range req.Calls {
		results = append(results, w.run(c))
	}
	return Response{Rejected: rejected, Results: results}
}

// gatewayAPIObjects returns the Gateway API objects of the config that passed
// validation, as YAML documents. istiod's Gateway API controller reads routes,
// Gateways and ReferenceGrants from the Kubernetes client's informers, not from
// the config store, so they must be Kubernetes objects too (Istio's own
// simulation tests pass them both ways); given only as config they would be
// validated and then silently ignored.
func gatewayAPIObjects(config string, rejected []ObjectReport) (string, error) {
	docs, err := splitYAML(config)
	if err != nil {
		return "", err
	}
	refused := map[string]bool{}
	for _, r := range rejected {
		refused[r.Kind+"/"+r.Namespace+"/"+r.Name] = true
	}
	var out []string
	for _, d := range docs {
		api, _ := d["apiVersion"].(string)
		if !strings.HasPrefix(api, "gateway.networking.k8s.io/") &&
			!strings.HasPrefix(api, "gateway.networking.x-k8s.io/") {
			continue
		}
		meta, _ := d["metadata"].(map[string]any)
		name, _ := meta["name"].(string)
		namespace, _ := meta["namespace"].(string)
		kind, _ := d["kind"].(string)
		if refused[kind+"/"+orDefault(namespace, "default")+"/"+name] {
			continue
		}
		b, err := yaml.Marshal(d)
		if err != nil {
			return "", err
		}
		out = append(out, string(b))
	}
	return strings.Join(out, "---\n"), nil
}

// normalizeKube drops empty documents: the fake client rejects them.
func normalizeKube(text string) (string, error) {
	docs, err := splitYAML(text)
	if err != nil {
		return "", err
	}
	out := make([]string, 0, len(docs))
	for _, d := range docs {
		b, err := yaml.Marshal(d)
		if err != nil {
			return "", err
		}
		out = append(out, string(b))
	}
	return strings.Join(out, "---\n"), nil
}

func splitYAML(text string) ([]map[string]any, error) {
	decoder := kubeyaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(text)), 512*1024)
	var docs []map[string]any
	for {
		var doc map[string]any
		if err := decoder.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				return docs, nil
			}
			return nil, fmt.Errorf("cannot parse kube objects: %w", err)
		}
		if len(doc) > 0 {
			docs = append(docs, doc)
		}
	}
}

// synthesize builds a running Pod per proxy and the EndpointSlices of every
// Service selecting those Pods: what the kubelet and the endpoint-slice
// controller would produce, and what istiod reads to build endpoints and a
// gateway's listeners.
func synthesize(proxies []Proxy, kubeText string) ([]runtime.Object, error) {
	docs, err := splitYAML(kubeText)
	if err != nil {
		return nil, err
	}
	var services []corev1.Service
	for _, d := range docs {
		if d["kind"] != "Service" {
			continue
		}
		b, _ := yaml.Marshal(d)
		var svc corev1.Service
		if err := yaml.Unmarshal(b, &svc); err != nil {
			return nil, fmt.Errorf("service: %w", err)
		}
		if svc.Namespace == "" {
			svc.Namespace = "default"
		}
		services = append(services, svc)
	}
	var objs []runtime.Object
	for _, p := range proxies {
		if net.ParseIP(p.IP) == nil {
			return nil, fmt.Errorf("proxy %s: invalid ip %q", p.Name, p.IP)
		}
		labels := map[string]string{"security.istio.io/tlsMode": "istio"}
		for k, v := range p.Labels {
			labels[k] = v
		}
		sa := p.ServiceAccount
		if sa == "" {
			sa = "default"
		}
		objs = append(objs, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, Labels: labels},
			Spec:       corev1.PodSpec{ServiceAccountName: sa, NodeName: "node"},
			Status: corev1.PodStatus{
				Phase:      corev1.PodRunning,
				PodIP:      p.IP,
				PodIPs:     []corev1.PodIP{{IP: p.IP}},
				Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			},
		})
	}
	for _, svc := range services {
		if len(svc.Spec.Selector) == 0 {
			continue
		}
		var eps []discoveryv1.Endpoint
		for _, p := range proxies {
			if p.Namespace != svc.Namespace || !selects(svc.Spec.Selector, p.Labels) {
				continue
			}
			ready := true
			eps = append(eps, discoveryv1.Endpoint{
				Addresses:  []string{p.IP},
				Conditions: discoveryv1.EndpointConditions{Ready: &ready},
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: p.Name, Namespace: p.Namespace},
			})
		}
		if len(eps) == 0 {
			continue
		}
		var ports []discoveryv1.EndpointPort
		for _, sp := range svc.Spec.Ports {
			target := sp.Port
			if sp.TargetPort.Type == intstr.Int && sp.TargetPort.IntVal != 0 {
				target = sp.TargetPort.IntVal
			}
			name, proto := sp.Name, sp.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			ports = append(ports, discoveryv1.EndpointPort{Name: &name, Port: &target, Protocol: &proto})
		}
		objs = append(objs, &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Name: svc.Name + "-meshsim", Namespace: svc.Namespace,
				Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name},
			},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   eps,
			Ports:       ports,
		})
	}
	return objs, nil
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func (w *world) view(p *Proxy) *proxyView {
	if v, ok := w.sims[p.Name]; ok {
		return v
	}
	mp := &model.Proxy{
		ID:              p.Name + "." + p.Namespace,
		Type:            model.SidecarProxy,
		IPAddresses:     []string{p.IP},
		ConfigNamespace: p.Namespace,
		Labels:          p.Labels,
		Metadata: &model.NodeMetadata{
			Labels:         p.Labels,
			Namespace:      p.Namespace,
			ServiceAccount: p.ServiceAccount,
		},
	}
	if p.Kind == "gateway" {
		mp.Type = model.Router
	}
	mp = w.server.SetupProxy(mp)
	sim := simulation.NewSimulation(w.t, w.server, mp)
	v := &proxyView{proxy: p, sim: sim, clusters: map[string]*cluster.Cluster{}, endpoints: map[string][]string{}}
	for _, c := range sim.Clusters {
		v.clusters[c.Name] = c
	}
	for _, cla := range w.server.Endpoints(mp) {
		v.endpoints[cla.ClusterName] = append(v.endpoints[cla.ClusterName], claEndpoints(cla)...)
	}
	w.sims[p.Name] = v
	return v
}

func claEndpoints(cla *endpoint.ClusterLoadAssignment) []string {
	var out []string
	if cla == nil {
		return out
	}
	for _, loc := range cla.Endpoints {
		for _, lb := range loc.LbEndpoints {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil {
				continue
			}
			out = append(out, net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))))
		}
	}
	return out
}

// run follows one call through every proxy it crosses.
func (w *world) run(c Call) CallResult {
	res := CallResult{ID: c.ID, Legs: []Leg{}}
	src, ok := w.proxies[c.From]
	if !ok {
		res.Verdict, res.Reason = "error", fmt.Sprintf("unknown proxy %q", c.From)
		return res
	}
	call := simulation.Call{
		Address:    c.Address,
		Port:       c.Port,
		Path:       c.Path,
		Protocol:   simulation.Protocol(orDefault(c.Protocol, "tcp")),
		TLS:        simulation.TLSMode(orDefault(c.TLS, "plaintext")),
		HostHeader: c.Host,
		Sni:        c.SNI,
		CallMode:   simulation.CallModeOutbound,
	}
	if call.Address == "" {
		call.Address = outsideAddress
	}
	if call.Sni == "" && call.TLS != simulation.Plaintext {
		call.Sni = c.Host
	}
	if !speaksHTTP(call) {
		call.HostHeader = ""
	}
	cur := src
	var peer *Proxy // the workload whose identity the current leg carries over mTLS
	for leg := 0; leg < maxLegs; leg++ {
		v := w.view(cur)
		r := v.sim.Run(call)
		l := Leg{
			Proxy: cur.Name, Address: call.Address, Port: call.Port,
			Protocol: string(call.Protocol), TLS: string(call.TLS), SNI: call.Sni, Host: call.HostHeader,
			Listener: r.ListenerMatched, FilterChain: r.FilterChainMatched,
			RouteConfig: r.RouteConfigMatched, VirtualHost: r.VirtualHostMatched,
			Route: r.RouteMatched, Cluster: r.ClusterMatched,
		}
		if r.Error != nil {
			l.Error = r.Error.Error()
		}
		if leg > 0 {
			l.Authz = w.authorize(v, r, call, peer)
		}
		cl := v.clusters[r.ClusterMatched]
		if cl != nil {
			l.ClusterType = clusterType(cl)
			l.Transport = transportOf(cl)
			l.Endpoints = v.endpoints[cl.Name]
			if inline := claEndpoints(cl.GetLoadAssignment()); len(inline) > 0 {
				l.Endpoints = inline
			}
		}
		res.Legs = append(res.Legs, l)

		switch {
		case r.Error != nil:
			res.Verdict, res.Reason = "blocked", r.Error.Error()
			if errors.Is(r.Error, simulation.ErrMultipleFilterChain) {
				res.Verdict = "error"
			}
			return res
		case l.Authz != nil && !l.Authz.Allowed:
			res.Verdict, res.Reason = "blocked", "denied by AuthorizationPolicy at "+cur.Name
			return res
		case r.ClusterMatched == "":
			res.Verdict, res.Reason = "blocked", "route without a cluster (direct response)"
			return res
		case r.ClusterMatched == "BlackHoleCluster":
			res.Verdict, res.Reason = "blocked", "BlackHoleCluster"
			return res
		case r.ClusterMatched == "PassthroughCluster" || strings.HasPrefix(r.ClusterMatched, "InboundPassthroughCluster"):
			res.Verdict, res.Host, res.Port = "passthrough", originalHost(call), call.Port
			return res
		case cl == nil:
			res.Verdict, res.Reason = "blocked", "cluster "+r.ClusterMatched+" not sent to the proxy (503)"
			return res
		case l.ClusterType == "ORIGINAL_DST":
			res.Verdict, res.Host, res.Port = "passthrough", originalHost(call), call.Port
			return res
		case strings.Contains(l.ClusterType, "dynamic_forward_proxy"):
			// DYNAMIC_DNS: Envoy resolves the name the client sent (SNI, else Host).
			_, _, _, port := model.ParseSubsetKey(r.ClusterMatched)
			res.Verdict, res.Host, res.Port = "direct", originalHost(call), port
			return res
		}
		// Does the cluster lead to another proxy we model (an egress gateway)?
		if l.ClusterType == "EDS" && len(l.Endpoints) == 0 {
			// Envoy has no host to connect to (a ServiceEntry whose workloadSelector
			// picks no pod, a Service without endpoints): the connection is reset.
			res.Verdict, res.Reason = "blocked", "cluster has no endpoints"
			return res
		}
		next, nextPort := w.proxyBehind(l.Endpoints)
		if next == nil {
			res.Verdict = "direct"
			res.Endpoints = l.Endpoints
			_, _, hostname, port := model.ParseSubsetKey(r.ClusterMatched)
			res.Host, res.Port = string(hostname), port
			if len(l.Endpoints) > 0 {
				if h, p, err := net.SplitHostPort(l.Endpoints[0]); err == nil {
					res.Host = h
					res.Port, _ = strconv.Atoi(p)
				}
			}
			return res
		}
		_, subset, hostname, _ := model.ParseSubsetKey(r.ClusterMatched)
		nextCall := simulation.Call{
			Address:    next.IP,
			Port:       nextPort,
			Path:       call.Path,
			Protocol:   call.Protocol,
			HostHeader: call.HostHeader,
			CallMode:   simulation.CallModeGateway,
		}
		mode := "DISABLE"
		if l.Transport != nil {
			mode = l.Transport.Mode
		}
		switch mode {
		case "ISTIO_MUTUAL", "AUTO":
			nextCall.TLS, nextCall.Sni = simulation.MTLS, l.Transport.SNI
			peer = cur
		case "SIMPLE", "MUTUAL":
			nextCall.TLS, nextCall.Sni = simulation.TLS, l.Transport.SNI
			peer = nil
		default:
			nextCall.TLS, nextCall.Sni = call.TLS, call.Sni
			if call.TLS != simulation.MTLS {
				peer = nil
			}
		}
		if !speaksHTTP(nextCall) {
			nextCall.HostHeader = ""
		}
		if res.Gateway == nil {
			res.Gateway = &GatewayHop{
				Proxy: next.Name, Namespace: next.Namespace, Service: string(hostname), Subset: subset,
				SNI: nextCall.Sni, TLSMode: mode, Port: nextPort,
			}
		}
		cur, call = next, nextCall
	}
	res.Verdict, res.Reason = "error", "too many proxy hops"
	return res
}

// speaksHTTP: HTTP inside the connection, whatever TLS wraps it (the Host header
// survives an mTLS hop to a gateway that terminates it).
func speaksHTTP(c simulation.Call) bool {
	return c.Protocol == simulation.HTTP || c.Protocol == simulation.HTTP2
}

func originalHost(c simulation.Call) string {
	if c.HostHeader != "" {
		return c.HostHeader
	}
	if c.Sni != "" {
		return c.Sni
	}
	return c.Address
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// proxyBehind returns the modelled gateway owning one of the endpoints. A
// sidecar's pod is not followed: a call to its address is captured by the
// pod's inbound listener and handed to the pod's own application, while its
// outbound listeners see only what that application dials itself. The call
// ends there, inside the mesh, at the pod's address.
func (w *world) proxyBehind(endpoints []string) (*Proxy, int) {
	names := make([]string, 0, len(w.proxies))
	for n := range w.proxies {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, ep := range endpoints {
		h, p, err := net.SplitHostPort(ep)
		if err != nil {
			continue
		}
		for _, n := range names {
			if w.proxies[n].IP == h && w.proxies[n].Kind == "gateway" {
				port, _ := strconv.Atoi(p)
				return w.proxies[n], port
			}
		}
	}
	return nil, 0
}

func clusterType(c *cluster.Cluster) string {
	if c.GetClusterType() != nil {
		return c.GetClusterType().GetName()
	}
	return c.GetType().String()
}

// transportOf reads the TLS a cluster originates: a DestinationRule can change it
// (and the SNI) without changing the cluster's name.
func transportOf(c *cluster.Cluster) *Transport {
	if ts := c.GetTransportSocket(); ts != nil {
		return socketTLS(ts)
	}
	for _, m := range c.GetTransportSocketMatches() {
		if m.GetName() == "tlsMode-istio" {
			t := socketTLS(m.GetTransportSocket())
			if t.Mode == "ISTIO_MUTUAL" {
				t.Mode = "AUTO"
			}
			return t
		}
	}
	return &Transport{Mode: "DISABLE"}
}

// socketTLS reads the TLS of a transport socket, looking inside the PROXY
// protocol wrapper a DestinationRule's proxyProtocol puts around it: the
// connection still carries that TLS (its mode and SNI), after the header.
func socketTLS(ts *core.TransportSocket) *Transport {
	if ts.GetName() == proxyProtocolSocket {
		wrapper := &proxyprotocol.ProxyProtocolUpstreamTransport{}
		if err := proto.Unmarshal(ts.GetTypedConfig().GetValue(), wrapper); err != nil {
			return &Transport{Mode: "UNKNOWN", ProxyProtocol: true}
		}
		t := socketTLS(wrapper.GetTransportSocket())
		t.ProxyProtocol = true
		return t
	}
	return upstreamTLS(ts.GetTypedConfig().GetValue(), ts.GetName())
}

// proxyProtocolSocket is Envoy's upstream PROXY protocol transport socket.
const proxyProtocolSocket = "envoy.transport_sockets.upstream_proxy_protocol"

func upstreamTLS(raw []byte, name string) *Transport {
	if !strings.Contains(name, "tls") {
		return &Transport{Mode: "DISABLE"}
	}
	ctx := &tls.UpstreamTlsContext{}
	if err := proto.Unmarshal(raw, ctx); err != nil {
		return &Transport{Mode: "UNKNOWN"}
	}
	t := &Transport{SNI: ctx.GetSni(), Mode: "SIMPLE"}
	certs := ctx.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()
	if len(certs) > 0 || len(ctx.GetCommonTlsContext().GetTlsCertificates()) > 0 {
		t.Mode = "MUTUAL"
		if len(certs) > 0 && certs[0].GetName() == "default" {
			t.Mode = "ISTIO_MUTUAL"
		}
	}
	return t
}

// chainNamed finds the filter chain the simulation matched.
func chainNamed(v *proxyView, listenerName, chainName string) *listener.FilterChain {
	for _, l := range v.sim.Listeners {
		if l.GetName() != listenerName {
			continue
		}
		for _, fc := range l.GetFilterChains() {
			if fc.GetName() == chainName {
				return fc
			}
		}
		if d := l.GetDefaultFilterChain(); d != nil && d.GetName() == chainName {
			return d
		}
	}
	return nil
}
