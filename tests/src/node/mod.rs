//! The test node: what the kubelet does for pods, done for the end-to-end tests on this
//! machine (there is no container runtime here): the pod network ([`net`]), the programs
//! images stand for ([`images`]), the rules that turn a container spec into what runs
//! ([`spec`]), volumes ([`volume`]), the launcher that mounts them and becomes the container
//! inside the pod's namespaces ([`launch`]), one container's life ([`container`]) with its
//! probes ([`probe`]), the loop that runs the pods bound to the test Node ([`agent`]), and
//! kube-proxy's and the cluster DNS's part: Services reached by ClusterIP and by name
//! ([`services`], [`cluster_dns`]); and the mesh installed on it with the chart ([`mesh`]).

pub mod agent;
pub mod cluster_dns;
pub mod container;
pub mod images;
pub mod launch;
pub mod mesh;
pub mod net;
pub mod probe;
pub mod services;
pub mod spec;
pub mod test_node;
pub mod volume;
