package meshsim

// Request is one input line. See README.md for the meaning of every field.
type Request struct {
	ID string `json:"id,omitempty"`
	// Op is "simulate" or "validate".
	Op string `json:"op"`
	// Config holds Istio objects as YAML documents.
	Config string `json:"config,omitempty"`
	// Kube holds Kubernetes objects (Services, Namespaces, Pods...) as YAML documents.
	Kube string `json:"kube,omitempty"`
	// Mesh is an optional MeshConfig in YAML, applied over Istio's defaults.
	Mesh    string  `json:"mesh,omitempty"`
	Proxies []Proxy `json:"proxies,omitempty"`
	Calls   []Call  `json:"calls,omitempty"`
}

// Proxy is a workload with an Envoy: a sidecar or a gateway. A Pod (and the
// EndpointSlices of the Services selecting it) is synthesized for each one,
// as the kubelet and the endpoint controller would.
type Proxy struct {
	Name           string            `json:"name"`
	Kind           string            `json:"kind"` // sidecar | gateway
	Namespace      string            `json:"namespace"`
	Labels         map[string]string `json:"labels,omitempty"`
	IP             string            `json:"ip"`
	ServiceAccount string            `json:"serviceAccount,omitempty"`
}

// Call is one connection a proxy's application opens.
type Call struct {
	ID   string `json:"id,omitempty"`
	From string `json:"from"`
	// Host is the name the application asked for: the Host header of plaintext
	// HTTP and the default SNI of TLS.
	Host string `json:"host,omitempty"`
	// Address is the IP the application connects to (what DNS answered);
	// default: an address outside the mesh.
	Address  string `json:"address,omitempty"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol,omitempty"` // http | http2 | tcp (default tcp)
	TLS      string `json:"tls,omitempty"`      // plaintext | tls | mtls (default plaintext)
	SNI      string `json:"sni,omitempty"`
	Path     string `json:"path,omitempty"`
}

// Response is one output line.
type Response struct {
	ID        string         `json:"id,omitempty"`
	Op        string         `json:"op,omitempty"`
	Error     string         `json:"error,omitempty"`
	ElapsedMs int64          `json:"elapsedMs"`
	Rejected  []ObjectReport `json:"rejected,omitempty"`
	Objects   []ObjectReport `json:"objects,omitempty"`
	Results   []CallResult   `json:"results,omitempty"`
}

// ObjectReport is Istio's validation verdict on one object.
type ObjectReport struct {
	Kind      string   `json:"kind"`
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	Errors    []string `json:"errors"`
	Warnings  []string `json:"warnings"`
}

// CallResult is where one call ends.
type CallResult struct {
	ID string `json:"id,omitempty"`
	// Verdict: blocked | passthrough | direct | error.
	Verdict string `json:"verdict"`
	Reason  string `json:"reason,omitempty"`
	// Host and Port: the final upstream (direct, passthrough).
	Host      string   `json:"host,omitempty"`
	Port      int      `json:"port,omitempty"`
	Endpoints []string `json:"endpoints,omitempty"`
	// Gateway is set when the call went through an egress gateway.
	Gateway *GatewayHop `json:"gateway,omitempty"`
	Legs    []Leg       `json:"legs"`
}

// GatewayHop is how the call entered an egress gateway.
type GatewayHop struct {
	Proxy     string `json:"proxy"`
	Namespace string `json:"namespace"`
	Service   string `json:"service"`
	Subset    string `json:"subset"`
	SNI       string `json:"sni"`
	TLSMode   string `json:"tlsMode"`
	Port      int    `json:"port"`
}

// Leg is one proxy's handling of the call.
type Leg struct {
	Proxy       string     `json:"proxy"`
	Address     string     `json:"address"`
	Port        int        `json:"port"`
	Protocol    string     `json:"protocol"`
	TLS         string     `json:"tls"`
	SNI         string     `json:"sni,omitempty"`
	Host        string     `json:"host,omitempty"`
	Listener    string     `json:"listener,omitempty"`
	FilterChain string     `json:"filterChain,omitempty"`
	RouteConfig string     `json:"routeConfig,omitempty"`
	VirtualHost string     `json:"virtualHost,omitempty"`
	Route       string     `json:"route,omitempty"`
	Cluster     string     `json:"cluster,omitempty"`
	ClusterType string     `json:"clusterType,omitempty"`
	Transport   *Transport `json:"transport,omitempty"`
	Endpoints   []string   `json:"endpoints,omitempty"`
	Error       string     `json:"error,omitempty"`
	Authz       *Authz     `json:"authz,omitempty"`
}

// Transport is the cluster's upstream TLS: ISTIO_MUTUAL, MUTUAL, SIMPLE, AUTO
// (Istio's auto mTLS: mTLS to endpoints with a sidecar) or DISABLE.
type Transport struct {
	Mode string `json:"mode"`
	SNI  string `json:"sni,omitempty"`
	// ProxyProtocol: a PROXY protocol header precedes the TLS (DestinationRule
	// proxyProtocol). The next leg is walked as if its listener accepted it,
	// which over-approximates where the call can go.
	ProxyProtocol bool `json:"proxyProtocol,omitempty"`
}

// Authz is the outcome of the RBAC filters of the matched filter chain.
type Authz struct {
	Allowed bool `json:"allowed"`
	// Filters lists each RBAC filter: its action and the policies that matched.
	Filters     []AuthzFilter `json:"filters"`
	Unsupported []string      `json:"unsupported,omitempty"`
}

// AuthzFilter is one RBAC filter evaluated.
type AuthzFilter struct {
	Name     string   `json:"name"`
	Action   string   `json:"action"`
	Policies []string `json:"policies"`
	Matched  []string `json:"matched"`
}
