module egress-guard.invalid/tools/kube

go 1.26.0

require k8s.io/kubernetes v1.36.3

tool (
	k8s.io/kubernetes/cmd/kube-apiserver
	k8s.io/kubernetes/cmd/kubectl
)
