"""GENERATED from `_record_base.Fields` by `python -m flowactors.engine._codegen`.
Do not edit.

The record constructors, the evolvers the engine asks for, and the packed event
codec, written out as straight-line code (see `_codegen` for why, and `_record` for
the record and the event layout). `tests/test_record.py` checks this file is current.
"""

# fmt: off
from __future__ import annotations

import struct
from collections.abc import Callable
from sys import intern as _intern
from typing import Any

import cbor2

from ._record_base import KEEP, EvolverSpec, Record, meta_tail


def from_list(v: list[Any]) -> Record:
    """A record from its snapshot list (interning type, state, run_state,
    last_event: one copy of each such string across a million records)."""
    return (
        v[0],  # id
        _intern(v[1]),  # type
        _intern(v[2]),  # state
        (None if v[3] is None else _intern(v[3])),  # run_state
        v[4],  # version
        v[5],  # attempts
        v[6],  # reclaims
        v[7],  # fencing
        v[8],  # lease_owner
        v[9],  # lease_token
        v[10],  # lease_deadline
        v[11],  # created_at
        v[12],  # updated_at
        v[13],  # next_run_at
        v[14],  # priority
        v[15],  # partition
        v[16],  # payload_ver
        v[17],  # payload_size
        v[18],  # result_ver
        v[19],  # error_ver
        v[20],  # values
        v[21],  # attributes
        v[22],  # parent_id
        v[23],  # root_id
        v[24],  # correlation_id
        v[25],  # hist_floor
        v[26],  # active_deadline
        v[27],  # retention_until
        v[28],  # retention_ms
        v[29],  # create_digest
        _intern(v[30]),  # last_event
        v[31],  # ext
    )


def make_record(
    *,
    id: Any = None,
    type: Any = None,
    state: Any = None,
    run_state: Any = None,
    version: Any = None,
    attempts: Any = None,
    reclaims: Any = None,
    fencing: Any = None,
    lease_owner: Any = None,
    lease_token: Any = None,
    lease_deadline: Any = None,
    created_at: Any = None,
    updated_at: Any = None,
    next_run_at: Any = None,
    priority: Any = None,
    partition: Any = None,
    payload_ver: Any = None,
    payload_size: Any = None,
    result_ver: Any = None,
    error_ver: Any = None,
    values: Any = None,
    attributes: Any = None,
    parent_id: Any = None,
    root_id: Any = None,
    correlation_id: Any = None,
    hist_floor: Any = None,
    active_deadline: Any = None,
    retention_until: Any = None,
    retention_ms: Any = None,
    create_digest: Any = None,
    last_event: Any = None,
    ext: Any = None,
) -> Record:
    """A record from keywords, one per field; unset fields are None."""
    return (
        id,  # id
        type,  # type
        state,  # state
        run_state,  # run_state
        version,  # version
        attempts,  # attempts
        reclaims,  # reclaims
        fencing,  # fencing
        lease_owner,  # lease_owner
        lease_token,  # lease_token
        lease_deadline,  # lease_deadline
        created_at,  # created_at
        updated_at,  # updated_at
        next_run_at,  # next_run_at
        priority,  # priority
        partition,  # partition
        payload_ver,  # payload_ver
        payload_size,  # payload_size
        result_ver,  # result_ver
        error_ver,  # error_ver
        values,  # values
        attributes,  # attributes
        parent_id,  # parent_id
        root_id,  # root_id
        correlation_id,  # correlation_id
        hist_floor,  # hist_floor
        active_deadline,  # active_deadline
        retention_until,  # retention_until
        retention_ms,  # retention_ms
        create_digest,  # create_digest
        last_event,  # last_event
        ext,  # ext
    )


def evolve(
    r: Record,
    *,
    id: Any = KEEP,
    type: Any = KEEP,
    state: Any = KEEP,
    run_state: Any = KEEP,
    version: Any = KEEP,
    attempts: Any = KEEP,
    reclaims: Any = KEEP,
    fencing: Any = KEEP,
    lease_owner: Any = KEEP,
    lease_token: Any = KEEP,
    lease_deadline: Any = KEEP,
    created_at: Any = KEEP,
    updated_at: Any = KEEP,
    next_run_at: Any = KEEP,
    priority: Any = KEEP,
    partition: Any = KEEP,
    payload_ver: Any = KEEP,
    payload_size: Any = KEEP,
    result_ver: Any = KEEP,
    error_ver: Any = KEEP,
    values: Any = KEEP,
    attributes: Any = KEEP,
    parent_id: Any = KEEP,
    root_id: Any = KEEP,
    correlation_id: Any = KEEP,
    hist_floor: Any = KEEP,
    active_deadline: Any = KEEP,
    retention_until: Any = KEEP,
    retention_ms: Any = KEEP,
    create_digest: Any = KEEP,
    last_event: Any = KEEP,
    ext: Any = KEEP,
) -> Record:
    """A copy of `r` with the given fields replaced."""
    keep = KEEP
    return (
        r[0] if id is keep else id,  # id
        r[1] if type is keep else type,  # type
        r[2] if state is keep else state,  # state
        r[3] if run_state is keep else run_state,  # run_state
        r[4] if version is keep else version,  # version
        r[5] if attempts is keep else attempts,  # attempts
        r[6] if reclaims is keep else reclaims,  # reclaims
        r[7] if fencing is keep else fencing,  # fencing
        r[8] if lease_owner is keep else lease_owner,  # lease_owner
        r[9] if lease_token is keep else lease_token,  # lease_token
        r[10] if lease_deadline is keep else lease_deadline,  # lease_deadline
        r[11] if created_at is keep else created_at,  # created_at
        r[12] if updated_at is keep else updated_at,  # updated_at
        r[13] if next_run_at is keep else next_run_at,  # next_run_at
        r[14] if priority is keep else priority,  # priority
        r[15] if partition is keep else partition,  # partition
        r[16] if payload_ver is keep else payload_ver,  # payload_ver
        r[17] if payload_size is keep else payload_size,  # payload_size
        r[18] if result_ver is keep else result_ver,  # result_ver
        r[19] if error_ver is keep else error_ver,  # error_ver
        r[20] if values is keep else values,  # values
        r[21] if attributes is keep else attributes,  # attributes
        r[22] if parent_id is keep else parent_id,  # parent_id
        r[23] if root_id is keep else root_id,  # root_id
        r[24] if correlation_id is keep else correlation_id,  # correlation_id
        r[25] if hist_floor is keep else hist_floor,  # hist_floor
        r[26] if active_deadline is keep else active_deadline,  # active_deadline
        r[27] if retention_until is keep else retention_until,  # retention_until
        r[28] if retention_ms is keep else retention_ms,  # retention_ms
        r[29] if create_digest is keep else create_digest,  # create_digest
        r[30] if last_event is keep else last_event,  # last_event
        r[31] if ext is keep else ext,  # ext
    )


def evolver_0(
    r: Record,
    *,
    state: Any,
    run_state: Any,
    version: Any,
    lease_owner: Any,
    lease_token: Any,
    lease_deadline: Any,
    next_run_at: Any,
    updated_at: Any,
    last_event: Any,
    retention_until: Any,
    values: Any = KEEP,
    result_ver: Any = KEEP,
    error_ver: Any = KEEP,
    fencing: Any = KEEP,
) -> Record:
    """evolver('state', 'run_state', 'version', 'lease_owner', 'lease_token', 'lease_deadline', 'next_run_at', 'updated_at', 'last_event', 'retention_until', optional=('values', 'result_ver', 'error_ver', 'fencing'))"""
    return (
        r[0],  # id
        r[1],  # type
        state,  # state
        run_state,  # run_state
        version,  # version
        r[5],  # attempts
        r[6],  # reclaims
        r[7] if fencing is KEEP else fencing,  # fencing
        lease_owner,  # lease_owner
        lease_token,  # lease_token
        lease_deadline,  # lease_deadline
        r[11],  # created_at
        updated_at,  # updated_at
        next_run_at,  # next_run_at
        r[14],  # priority
        r[15],  # partition
        r[16],  # payload_ver
        r[17],  # payload_size
        r[18] if result_ver is KEEP else result_ver,  # result_ver
        r[19] if error_ver is KEEP else error_ver,  # error_ver
        r[20] if values is KEEP else values,  # values
        r[21],  # attributes
        r[22],  # parent_id
        r[23],  # root_id
        r[24],  # correlation_id
        r[25],  # hist_floor
        r[26],  # active_deadline
        retention_until,  # retention_until
        r[28],  # retention_ms
        r[29],  # create_digest
        last_event,  # last_event
        r[31],  # ext
    )


def evolver_1(
    r: Record,
    *,
    state: Any,
    run_state: Any,
    version: Any,
    lease_owner: Any,
    lease_token: Any,
    lease_deadline: Any,
    next_run_at: Any,
    updated_at: Any,
    last_event: Any,
    reclaims: Any,
    fencing: Any,
) -> Record:
    """evolver('state', 'run_state', 'version', 'lease_owner', 'lease_token', 'lease_deadline', 'next_run_at', 'updated_at', 'last_event', 'reclaims', 'fencing')"""
    return (
        r[0],  # id
        r[1],  # type
        state,  # state
        run_state,  # run_state
        version,  # version
        r[5],  # attempts
        reclaims,  # reclaims
        fencing,  # fencing
        lease_owner,  # lease_owner
        lease_token,  # lease_token
        lease_deadline,  # lease_deadline
        r[11],  # created_at
        updated_at,  # updated_at
        next_run_at,  # next_run_at
        r[14],  # priority
        r[15],  # partition
        r[16],  # payload_ver
        r[17],  # payload_size
        r[18],  # result_ver
        r[19],  # error_ver
        r[20],  # values
        r[21],  # attributes
        r[22],  # parent_id
        r[23],  # root_id
        r[24],  # correlation_id
        r[25],  # hist_floor
        r[26],  # active_deadline
        r[27],  # retention_until
        r[28],  # retention_ms
        r[29],  # create_digest
        last_event,  # last_event
        r[31],  # ext
    )


def evolver_2(
    r: Record,
    state: Any,
    run_state: Any,
    version: Any,
    fencing: Any,
    lease_owner: Any,
    lease_token: Any,
    lease_deadline: Any,
    next_run_at: Any,
    updated_at: Any,
) -> Record:
    """evolver('state', 'run_state', 'version', 'fencing', 'lease_owner', 'lease_token', 'lease_deadline', 'next_run_at', 'updated_at', positional=True, fixed={'last_event': 'claimed'})"""
    return (
        r[0],  # id
        r[1],  # type
        state,  # state
        run_state,  # run_state
        version,  # version
        r[5],  # attempts
        r[6],  # reclaims
        fencing,  # fencing
        lease_owner,  # lease_owner
        lease_token,  # lease_token
        lease_deadline,  # lease_deadline
        r[11],  # created_at
        updated_at,  # updated_at
        next_run_at,  # next_run_at
        r[14],  # priority
        r[15],  # partition
        r[16],  # payload_ver
        r[17],  # payload_size
        r[18],  # result_ver
        r[19],  # error_ver
        r[20],  # values
        r[21],  # attributes
        r[22],  # parent_id
        r[23],  # root_id
        r[24],  # correlation_id
        r[25],  # hist_floor
        r[26],  # active_deadline
        r[27],  # retention_until
        r[28],  # retention_ms
        r[29],  # create_digest
        'claimed',  # last_event
        r[31],  # ext
    )


def evolver_3(
    r: Record,
    *,
    state: Any,
    run_state: Any,
    version: Any,
    lease_owner: Any,
    lease_token: Any,
    lease_deadline: Any,
    next_run_at: Any,
    updated_at: Any,
    last_event: Any,
    fencing: Any,
    values: Any,
    payload_ver: Any = KEEP,
    payload_size: Any = KEEP,
    attributes: Any = KEEP,
) -> Record:
    """evolver('state', 'run_state', 'version', 'lease_owner', 'lease_token', 'lease_deadline', 'next_run_at', 'updated_at', 'last_event', 'fencing', 'values', optional=('payload_ver', 'payload_size', 'attributes'))"""
    return (
        r[0],  # id
        r[1],  # type
        state,  # state
        run_state,  # run_state
        version,  # version
        r[5],  # attempts
        r[6],  # reclaims
        fencing,  # fencing
        lease_owner,  # lease_owner
        lease_token,  # lease_token
        lease_deadline,  # lease_deadline
        r[11],  # created_at
        updated_at,  # updated_at
        next_run_at,  # next_run_at
        r[14],  # priority
        r[15],  # partition
        r[16] if payload_ver is KEEP else payload_ver,  # payload_ver
        r[17] if payload_size is KEEP else payload_size,  # payload_size
        r[18],  # result_ver
        r[19],  # error_ver
        values,  # values
        r[21] if attributes is KEEP else attributes,  # attributes
        r[22],  # parent_id
        r[23],  # root_id
        r[24],  # correlation_id
        r[25],  # hist_floor
        r[26],  # active_deadline
        r[27],  # retention_until
        r[28],  # retention_ms
        r[29],  # create_digest
        last_event,  # last_event
        r[31],  # ext
    )


def evolver_4(
    r: Record,
    *,
    state: Any,
    run_state: Any,
    version: Any,
    lease_owner: Any,
    lease_token: Any,
    lease_deadline: Any,
    next_run_at: Any,
    updated_at: Any,
    last_event: Any,
    priority: Any,
    values: Any,
    payload_ver: Any = KEEP,
    payload_size: Any = KEEP,
    attributes: Any = KEEP,
) -> Record:
    """evolver('state', 'run_state', 'version', 'lease_owner', 'lease_token', 'lease_deadline', 'next_run_at', 'updated_at', 'last_event', 'priority', 'values', optional=('payload_ver', 'payload_size', 'attributes'))"""
    return (
        r[0],  # id
        r[1],  # type
        state,  # state
        run_state,  # run_state
        version,  # version
        r[5],  # attempts
        r[6],  # reclaims
        r[7],  # fencing
        lease_owner,  # lease_owner
        lease_token,  # lease_token
        lease_deadline,  # lease_deadline
        r[11],  # created_at
        updated_at,  # updated_at
        next_run_at,  # next_run_at
        priority,  # priority
        r[15],  # partition
        r[16] if payload_ver is KEEP else payload_ver,  # payload_ver
        r[17] if payload_size is KEEP else payload_size,  # payload_size
        r[18],  # result_ver
        r[19],  # error_ver
        values,  # values
        r[21] if attributes is KEEP else attributes,  # attributes
        r[22],  # parent_id
        r[23],  # root_id
        r[24],  # correlation_id
        r[25],  # hist_floor
        r[26],  # active_deadline
        r[27],  # retention_until
        r[28],  # retention_ms
        r[29],  # create_digest
        last_event,  # last_event
        r[31],  # ext
    )


def evolver_5(
    r: Record,
    state: Any,
    version: Any,
    updated_at: Any,
    retention_until: Any,
    last_event: Any,
    result_ver: Any,
    error_ver: Any,
) -> Record:
    """evolver('state', 'version', 'updated_at', 'retention_until', 'last_event', 'result_ver', 'error_ver', positional=True, fixed={'run_state': None, 'lease_owner': None, 'lease_token': None, 'lease_deadline': None, 'next_run_at': None})"""
    return (
        r[0],  # id
        r[1],  # type
        state,  # state
        None,  # run_state
        version,  # version
        r[5],  # attempts
        r[6],  # reclaims
        r[7],  # fencing
        None,  # lease_owner
        None,  # lease_token
        None,  # lease_deadline
        r[11],  # created_at
        updated_at,  # updated_at
        None,  # next_run_at
        r[14],  # priority
        r[15],  # partition
        r[16],  # payload_ver
        r[17],  # payload_size
        result_ver,  # result_ver
        error_ver,  # error_ver
        r[20],  # values
        r[21],  # attributes
        r[22],  # parent_id
        r[23],  # root_id
        r[24],  # correlation_id
        r[25],  # hist_floor
        r[26],  # active_deadline
        retention_until,  # retention_until
        r[28],  # retention_ms
        r[29],  # create_digest
        last_event,  # last_event
        r[31],  # ext
    )


def evolver_6(
    r: Record,
    state: Any,
    version: Any,
    next_run_at: Any,
    updated_at: Any,
) -> Record:
    """evolver('state', 'version', 'next_run_at', 'updated_at', positional=True, fixed={'run_state': None, 'lease_owner': None, 'lease_token': None, 'lease_deadline': None, 'last_event': 'transitioned'})"""
    return (
        r[0],  # id
        r[1],  # type
        state,  # state
        None,  # run_state
        version,  # version
        r[5],  # attempts
        r[6],  # reclaims
        r[7],  # fencing
        None,  # lease_owner
        None,  # lease_token
        None,  # lease_deadline
        r[11],  # created_at
        updated_at,  # updated_at
        next_run_at,  # next_run_at
        r[14],  # priority
        r[15],  # partition
        r[16],  # payload_ver
        r[17],  # payload_size
        r[18],  # result_ver
        r[19],  # error_ver
        r[20],  # values
        r[21],  # attributes
        r[22],  # parent_id
        r[23],  # root_id
        r[24],  # correlation_id
        r[25],  # hist_floor
        r[26],  # active_deadline
        r[27],  # retention_until
        r[28],  # retention_ms
        r[29],  # create_digest
        'transitioned',  # last_event
        r[31],  # ext
    )


EVOLVERS: dict[EvolverSpec, Callable[..., Record]] = {
    (('state', 'run_state', 'version', 'lease_owner', 'lease_token', 'lease_deadline', 'next_run_at', 'updated_at', 'last_event', 'retention_until'), ('values', 'result_ver', 'error_ver', 'fencing'), False, ()): evolver_0,
    (('state', 'run_state', 'version', 'lease_owner', 'lease_token', 'lease_deadline', 'next_run_at', 'updated_at', 'last_event', 'reclaims', 'fencing'), (), False, ()): evolver_1,
    (('state', 'run_state', 'version', 'fencing', 'lease_owner', 'lease_token', 'lease_deadline', 'next_run_at', 'updated_at'), (), True, (('last_event', 'claimed'),)): evolver_2,
    (('state', 'run_state', 'version', 'lease_owner', 'lease_token', 'lease_deadline', 'next_run_at', 'updated_at', 'last_event', 'fencing', 'values'), ('payload_ver', 'payload_size', 'attributes'), False, ()): evolver_3,
    (('state', 'run_state', 'version', 'lease_owner', 'lease_token', 'lease_deadline', 'next_run_at', 'updated_at', 'last_event', 'priority', 'values'), ('payload_ver', 'payload_size', 'attributes'), False, ()): evolver_4,
    (('state', 'version', 'updated_at', 'retention_until', 'last_event', 'result_ver', 'error_ver'), (), True, (('run_state', None), ('lease_owner', None), ('lease_token', None), ('lease_deadline', None), ('next_run_at', None))): evolver_5,
    (('state', 'version', 'next_run_at', 'updated_at'), (), True, (('run_state', None), ('lease_owner', None), ('lease_token', None), ('lease_deadline', None), ('last_event', 'transitioned'))): evolver_6,
}


# -- the packed event (see the layout in _record.py) --------------------------------

# format u8, flags u8, none mask u64, 18 ints u64, text length u32
HEAD = struct.Struct('<BBQQQQQQQQQQQQQQQQQQQI')  # 158 bytes
_pack = HEAD.pack
_unpack = HEAD.unpack_from
# bit of each optional field in the none mask
#                      1  run_state
#                      2  lease_owner
#                      4  lease_token
#                      8  lease_deadline
#                     16  next_run_at
#                     32  partition
#                     64  parent_id
#                    128  root_id
#                    256  correlation_id
#                    512  active_deadline
#                   1024  retention_until
#                   2048  retention_ms
# the CBOR tail: [meta, blobs, values, attributes, ext]
NO_OTHERS = (None, None, None)  # None for each tail field


def encode_packed(
    r: Record, name: str, meta: dict[str, Any] | None, blobs: dict[str, bytes] | None
) -> bytes:
    """The packed event of `r`; raises struct.error / ValueError / TypeError
    for a record the fixed layout cannot hold."""
    id, type, state, run_state, version, attempts, reclaims, fencing, lease_owner, lease_token, lease_deadline, created_at, updated_at, next_run_at, priority, partition, payload_ver, payload_size, result_ver, error_ver, values, attributes, parent_id, root_id, correlation_id, hist_floor, active_deadline, retention_until, retention_ms, create_digest, last_event, ext = r
    mask = 0
    if run_state is None:
        mask |= 1
        run_state = ''
    if lease_owner is None:
        mask |= 2
        lease_owner = ''
    if lease_token is None:
        mask |= 4
        lease_token = ''
    if lease_deadline is None:
        mask |= 8
        lease_deadline = 0
    if next_run_at is None:
        mask |= 16
        next_run_at = 0
    if partition is None:
        mask |= 32
        partition = ''
    if parent_id is None:
        mask |= 64
        parent_id = ''
    if root_id is None:
        mask |= 128
        root_id = ''
    if correlation_id is None:
        mask |= 256
        correlation_id = ''
    if active_deadline is None:
        mask |= 512
        active_deadline = 0
    if retention_until is None:
        mask |= 1024
        retention_until = 0
    if retention_ms is None:
        mask |= 2048
        retention_ms = 0
    text = '\0'.join((name, id, type, state, run_state, lease_owner, lease_token, partition, parent_id, root_id, correlation_id, last_event, ))
    if text.count('\0') != 11:
        raise ValueError('NUL inside a string field')
    raw = text.encode()
    if blobs is None and values is None and attributes is None and ext is None:
        if meta is None:
            return _pack(2, 0, mask, version, attempts, reclaims, fencing, lease_deadline, created_at, updated_at, next_run_at, priority, payload_ver, payload_size, result_ver, error_ver, hist_floor, active_deadline, retention_until, retention_ms, create_digest, len(raw)) + raw
        tail = meta_tail(meta)
    else:
        tail = cbor2.dumps([meta, blobs, values, attributes, ext])
    return b''.join((_pack(2, 1, mask, version, attempts, reclaims, fencing, lease_deadline, created_at, updated_at, next_run_at, priority, payload_ver, payload_size, result_ver, error_ver, hist_floor, active_deadline, retention_until, retention_ms, create_digest, len(raw)), raw, tail))


def encode_given(r: Record, name: str, tail: bytes | None) -> bytes | None:
    """`encode_packed` with the tail given (a run's shared meta, encoded once);
    None when the record's own fields need a tail of their own."""
    id, type, state, run_state, version, attempts, reclaims, fencing, lease_owner, lease_token, lease_deadline, created_at, updated_at, next_run_at, priority, partition, payload_ver, payload_size, result_ver, error_ver, values, attributes, parent_id, root_id, correlation_id, hist_floor, active_deadline, retention_until, retention_ms, create_digest, last_event, ext = r
    if values is not None or attributes is not None or ext is not None:
        return None  # (checked first: no head is built only to be dropped)
    mask = 0
    if run_state is None:
        mask |= 1
        run_state = ''
    if lease_owner is None:
        mask |= 2
        lease_owner = ''
    if lease_token is None:
        mask |= 4
        lease_token = ''
    if lease_deadline is None:
        mask |= 8
        lease_deadline = 0
    if next_run_at is None:
        mask |= 16
        next_run_at = 0
    if partition is None:
        mask |= 32
        partition = ''
    if parent_id is None:
        mask |= 64
        parent_id = ''
    if root_id is None:
        mask |= 128
        root_id = ''
    if correlation_id is None:
        mask |= 256
        correlation_id = ''
    if active_deadline is None:
        mask |= 512
        active_deadline = 0
    if retention_until is None:
        mask |= 1024
        retention_until = 0
    if retention_ms is None:
        mask |= 2048
        retention_ms = 0
    text = '\0'.join((name, id, type, state, run_state, lease_owner, lease_token, partition, parent_id, root_id, correlation_id, last_event, ))
    if text.count('\0') != 11:
        raise ValueError('NUL inside a string field')
    raw = text.encode()
    if tail is None:
        return _pack(2, 0, mask, version, attempts, reclaims, fencing, lease_deadline, created_at, updated_at, next_run_at, priority, payload_ver, payload_size, result_ver, error_ver, hist_floor, active_deadline, retention_until, retention_ms, create_digest, len(raw)) + raw
    return b''.join((_pack(2, 1, mask, version, attempts, reclaims, fencing, lease_deadline, created_at, updated_at, next_run_at, priority, payload_ver, payload_size, result_ver, error_ver, hist_floor, active_deadline, retention_until, retention_ms, create_digest, len(raw)), raw, tail))


def decode_packed(
    data: bytes,
) -> tuple[str, dict[str, Any] | None, list[Any], dict[str, bytes] | None]:
    """(event name, meta, snapshot list in FIELDS order, blobs)."""
    run_state: str | None
    lease_owner: str | None
    lease_token: str | None
    lease_deadline: int | None
    next_run_at: int | None
    partition: str | None
    parent_id: str | None
    root_id: str | None
    correlation_id: str | None
    active_deadline: int | None
    retention_until: int | None
    retention_ms: int | None
    _fmt, flags, mask, version, attempts, reclaims, fencing, lease_deadline, created_at, updated_at, next_run_at, priority, payload_ver, payload_size, result_ver, error_ver, hist_floor, active_deadline, retention_until, retention_ms, create_digest, size = _unpack(data)
    end = 158 + size
    name, id, type, state, run_state, lease_owner, lease_token, partition, parent_id, root_id, correlation_id, last_event, = (
        data[158:end].decode().split('\0')
    )
    if flags & 1:
        meta, blobs, values, attributes, ext, = cbor2.loads(data[end:])
    else:
        meta = blobs = values = attributes = ext = None
    if mask & 1:
        run_state = None
    if mask & 2:
        lease_owner = None
    if mask & 4:
        lease_token = None
    if mask & 8:
        lease_deadline = None
    if mask & 16:
        next_run_at = None
    if mask & 32:
        partition = None
    if mask & 64:
        parent_id = None
    if mask & 128:
        root_id = None
    if mask & 256:
        correlation_id = None
    if mask & 512:
        active_deadline = None
    if mask & 1024:
        retention_until = None
    if mask & 2048:
        retention_ms = None
    return name, meta, [id, type, state, run_state, version, attempts, reclaims, fencing, lease_owner, lease_token, lease_deadline, created_at, updated_at, next_run_at, priority, partition, payload_ver, payload_size, result_ver, error_ver, values, attributes, parent_id, root_id, correlation_id, hist_floor, active_deadline, retention_until, retention_ms, create_digest, last_event, ext], blobs
