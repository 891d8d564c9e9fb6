"""The tests' Redis Cluster (3 masters + 3 replicas, one per session: tests/conftest.py): the
launcher lives in server/storage/cluster/local.py, shared with the load tester."""

from server.storage.cluster.local import ClusterUnavailable, LocalCluster, local_cluster

__all__ = ["ClusterUnavailable", "LocalCluster", "local_cluster"]
