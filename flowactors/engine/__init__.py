"""The Flow engine: records and their event format, the pure state machine and its
coordination rules, shard state and indexes, the shard actors, routing, queries and the
data directory's layout. Everything above it (`flowactors.sdk`, `flowactors.asl`,
`flowactors.code`, `flowactors.ops`, `flowactors.ferric`) uses the public API that
`flowactors` re-exports; nothing here imports from those layers.

    _record_base, _record, _record_gen   a flow's record, its history event format
    _machine                             the pure Flow state machine (state, command, now)
    _coord                               coordination rules: fanout, cascades, signals, rewind
    _state, _sorted, _queries            one shard's records, indexes and paged queries
    _shard                               one Trio actor per shard: decide, write, answer
    _routing                             where a flow lives; requests to shard actors
    _commands, _coordination, _reads     the public Engine's methods, by concern
    _engine                              open_engine, the Engine object, closing
    _layout, _checkpoint                 the data directory: identity, saved records
    _types, _errors, _policy, _retry     public values, errors, policies, retry maths
    _tuning                              opt-in process tuning (the cyclic GC's thresholds)
"""
