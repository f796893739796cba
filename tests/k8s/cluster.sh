#!/usr/bin/env bash
# A throwaway Kubernetes control plane on loopback, for poking at by hand: etcd,
# kube-apiserver and (unless --no-controller-manager) kube-controller-manager, built from
# source by build.sh. No kubelet, no scheduler, no proxy: Pods are only API objects (set
# their status through the pods/status subresource).
#
# Usage:
#   cluster.sh up [--no-controller-manager] [STATE_DIR]   start; writes STATE_DIR/kubeconfig
#   cluster.sh env [STATE_DIR]                            print `export KUBECONFIG=...`
#   cluster.sh down [STATE_DIR]                           stop everything, remove STATE_DIR
#
# STATE_DIR defaults to ${TMPDIR:-/tmp}/weft-k8s. It holds the certs, kubeconfig, logs
# (*.log), pid files and etcd's data. Everything listens on 127.0.0.1 only; Service
# ClusterIPs come from 198.19.0.0/16.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MARKER=.weft-k8s-cluster

usage() {
	sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
}

CMD=${1:-}
[[ -n $CMD ]] || usage
shift
KCM=1
STATE=""
for arg in "$@"; do
	case "$arg" in
	--no-controller-manager) KCM=0 ;;
	-*) usage ;;
	*) STATE=$arg ;;
	esac
done
STATE=${STATE:-${TMPDIR:-/tmp}/weft-k8s}

# A TCP port on 127.0.0.1 nobody listens on (best effort: someone may take it before we do).
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 30000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
}

# start NAME BINARY ARGS...: runs it in the background, in its own session, logging to
# STATE/NAME.log; its pid goes to STATE/NAME.pid.
start() {
	local name=$1
	shift
	setsid "$@" >"$STATE/$name.log" 2>&1 </dev/null &
	echo $! >"$STATE/$name.pid"
}

running() { [[ -f $STATE/$1.pid ]] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

fail() {
	echo "cluster.sh: $1; last lines of $STATE/$2.log:" >&2
	tail -n 40 "$STATE/$2.log" >&2 || true
	stop
	echo "cluster.sh: stopped everything; logs stay in $STATE until \`cluster.sh down $STATE\`" >&2
	exit 1
}

stop() {
	local name pid
	for name in kube-controller-manager kube-apiserver etcd; do
		[[ -f $STATE/$name.pid ]] || continue
		pid=$(cat "$STATE/$name.pid")
		if kill -0 "$pid" 2>/dev/null; then
			kill "$pid" 2>/dev/null || true
			for _ in $(seq 50); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			kill -9 "$pid" 2>/dev/null || true
		fi
		rm -f "$STATE/$name.pid"
	done
}

cmd_up() {
	if [[ -e $STATE && ! -f $STATE/$MARKER ]]; then
		echo "cluster.sh: $STATE exists and is not a cluster state dir" >&2
		exit 1
	fi
	if running kube-apiserver || running etcd; then
		echo "cluster.sh: a cluster is already running in $STATE (cluster.sh down $STATE)" >&2
		exit 1
	fi
	"$HERE/build.sh"
	local bin
	bin="$("$HERE/build.sh" --print-bin-dir)"
	mkdir -p "$STATE"
	touch "$STATE/$MARKER"
	STATE="$(cd "$STATE" && pwd)"
	[[ -f $STATE/ca.crt ]] || "$HERE/certs.sh" "$STATE"

	local etcd_port peer_port api_port
	etcd_port=$(free_port)
	peer_port=$(free_port)
	api_port=$(free_port)
	echo "$api_port" >"$STATE/apiserver.port"

	start etcd "$bin/etcd" --name=weft-test \
		--data-dir="$STATE/etcd" \
		--listen-client-urls="http://127.0.0.1:$etcd_port" \
		--advertise-client-urls="http://127.0.0.1:$etcd_port" \
		--listen-peer-urls="http://127.0.0.1:$peer_port" \
		--initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
		--initial-cluster="weft-test=http://127.0.0.1:$peer_port" \
		--unsafe-no-fsync --log-level=warn

	start kube-apiserver "$bin/kube-apiserver" \
		--etcd-servers="http://127.0.0.1:$etcd_port" \
		--bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
		--endpoint-reconciler-type=none \
		--cert-dir="$STATE/apiserver-certs" \
		--tls-cert-file="$STATE/apiserver.crt" --tls-private-key-file="$STATE/apiserver.key" \
		--client-ca-file="$STATE/ca.crt" \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$STATE/sa.pub" \
		--service-account-signing-key-file="$STATE/sa.key" \
		--service-cluster-ip-range=198.19.0.0/16 \
		--authorization-mode=Node,RBAC \
		--allow-privileged=true --profiling=false

	cat >"$STATE/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: weft-test
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $STATE/ca.crt
users:
- name: admin
  user:
    client-certificate: $STATE/admin.crt
    client-key: $STATE/admin.key
contexts:
- name: weft-test
  context: {cluster: weft-test, user: admin}
current-context: weft-test
EOF

	local i
	for i in $(seq 600); do
		running etcd || fail "etcd exited" etcd
		running kube-apiserver || fail "kube-apiserver exited" kube-apiserver
		if [[ "$("$bin/kubectl" --kubeconfig="$STATE/kubeconfig" get --raw=/readyz 2>/dev/null)" == ok ]]; then
			break
		fi
		[[ $i == 600 ]] && fail "kube-apiserver not ready after 60s" kube-apiserver
		sleep 0.1
	done

	if [[ $KCM == 1 ]]; then
		start kube-controller-manager "$bin/kube-controller-manager" \
			--kubeconfig="$STATE/kubeconfig" \
			--bind-address=127.0.0.1 --secure-port=0 \
			--leader-elect=false \
			--controllers=endpointslice,namespace,garbagecollector,serviceaccount,serviceaccount-token,root-ca-cert-publisher,replicaset,deployment,job \
			--use-service-account-credentials \
			--service-account-private-key-file="$STATE/sa.key" \
			--root-ca-file="$STATE/ca.crt"
		for i in $(seq 300); do
			running kube-controller-manager || fail "kube-controller-manager exited" kube-controller-manager
			# The serviceaccount controller creates every namespace's `default` account.
			"$bin/kubectl" --kubeconfig="$STATE/kubeconfig" get serviceaccount default >/dev/null 2>&1 && break
			[[ $i == 300 ]] && fail "kube-controller-manager did not create default/default in 60s" kube-controller-manager
			sleep 0.2
		done
	fi
	echo "cluster up: https://127.0.0.1:$api_port (state and logs in $STATE)"
	echo "export KUBECONFIG=$STATE/kubeconfig PATH=$bin:\$PATH"
}

cmd_env() {
	[[ -f $STATE/kubeconfig ]] || {
		echo "cluster.sh: no cluster in $STATE" >&2
		exit 1
	}
	echo "export KUBECONFIG=$(cd "$STATE" && pwd)/kubeconfig"
	echo "export PATH=$("$HERE/build.sh" --print-bin-dir):\$PATH"
}

cmd_down() {
	[[ -e $STATE ]] || return 0
	if [[ ! -f $STATE/$MARKER ]]; then
		echo "cluster.sh: $STATE is not a cluster state dir; not touching it" >&2
		exit 1
	fi
	stop
	rm -rf "$STATE"
	echo "cluster down; removed $STATE"
}

case "$CMD" in
up) cmd_up ;;
env) cmd_env ;;
down) cmd_down ;;
*) usage ;;
esac
