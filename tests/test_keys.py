from hypothesis import given
from hypothesis import strategies as st

from server.storage.keys import Keys, cluster_slot


def test_cluster_slot_matches_redis_reference_values() -> None:
    # Values from `CLUSTER KEYSLOT` on a real Redis Cluster (and the cluster spec's examples).
    assert cluster_slot("foo") == 12182
    assert cluster_slot("somekey") == 11058
    assert cluster_slot("{user1000}.following") == cluster_slot("{user1000}.followers") == 3443
    assert cluster_slot("foo{}{bar}") == cluster_slot(b"foo{}{bar}")  # empty tag: whole key


@given(user=st.text(min_size=1, max_size=64), tx=st.text(min_size=1, max_size=64))
def test_a_wallets_keys_share_one_slot_with_its_shard(user: str, tx: str) -> None:
    keys = Keys("p:", 16)
    shard = keys.shard_of(user)
    slots = {
        cluster_slot(k)
        for k in (
            keys.wallet(user),
            keys.tx(user, tx),
            keys.ledger_stream(shard),
            keys.catalog(shard),
            keys.live_rooms(shard),
            keys.blocks(shard),
            keys.wallets_index(shard),
            keys.balance_channel(user),
        )
    }
    assert len(slots) == 1


@given(room=st.text(min_size=1, max_size=64))
def test_a_rooms_keys_share_one_slot(room: str) -> None:
    keys = Keys("p:", 16)
    room_keys = [
        keys.room(room), keys.room_seq(room), keys.room_history(room), keys.room_published(room),
        keys.room_leaderboard(room), keys.room_goal(room), keys.room_presence(room),
        keys.room_combos(room), keys.room_channel(room),
    ]
    assert len({cluster_slot(k) for k in room_keys}) == 1


def test_braces_in_ids_cannot_move_the_hash_tag() -> None:
    keys = Keys("p:", 4)
    user = "a}b{c"
    assert cluster_slot(keys.wallet(user)) == cluster_slot(keys.ledger_stream(keys.shard_of(user)))


def test_shards_spread_users() -> None:
    keys = Keys("p:", 16)
    assert len({keys.shard_of(f"user{i}") for i in range(1000)}) == 16
