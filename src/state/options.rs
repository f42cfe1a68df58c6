//! RocksDB settings of the state stores.

use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, DBCompressionType, Options, WriteBufferManager,
};

/// Compression of the data files of the state stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// No compression.
    None,
    /// Snappy.
    Snappy,
    /// LZ4: fast, with a fair ratio (the default).
    #[default]
    Lz4,
    /// Zstandard: a better ratio for more CPU.
    Zstd,
}

/// RocksDB settings of the state stores: one database per input partition
/// (a column family per store), all of one application sharing one block
/// cache and one budget of write buffers, so that RocksDB's memory does
/// not grow with the number of partitions.
///
/// The defaults keep memory small (state lives on disk, not in memory): a
/// 64 MiB LRU block cache shared by every partition's database, of which
/// the memtables (write buffers) of all partitions and stores take at most
/// 32 MiB (a RocksDB `WriteBufferManager` charged to that cache). For N
/// partitions that is about 64 MiB in all, not N times something (each
/// memtable's bloom filter, about 170 KB with 8 MiB write buffers, counts
/// in that budget even while the memtable is empty); beyond
/// it, each database keeps a little of its own (open data files, its log),
/// and pinned blocks (below) and memtables being flushed may exceed the
/// cache for a while. (Each partition used to have its own 16 MiB cache
/// and 8 MiB write buffers per store: up to 32 MiB a partition, 256 MiB
/// for 8.)
///
/// Data files carry bloom filters (10 bits a key), so reading a key that
/// has no state yet rarely touches the disk; filters and indexes are kept
/// in the block cache, so memory does not grow with the size of the state.
///
/// Besides RocksDB, a running application holds the state updates of the
/// running checkpoint (up to
/// [`commit_state_bytes`](crate::ApplicationBuilder::commit_state_bytes),
/// 32 MiB) and librdkafka's queues: the main consumer stops fetching once
/// 100 000 messages or 16 MiB of payloads wait, whichever comes first
/// (`queued.min.messages`, `queued.max.messages.kbytes`: kstreams lowers
/// the latter from librdkafka's 64 MiB; set either with
/// [`consumer_config`](crate::ApplicationBuilder::consumer_config));
/// librdkafka checks that before it sends a fetch, so one fetch a broker
/// (up to `fetch.max.bytes`) can come on top. The changelog reader of a
/// recovery keeps librdkafka's 64 MiB.
/// Measured with the defaults, the `count_per_key` example over 10 million
/// keys peaks at 200-210 MB of resident memory with 8 partitions, and
/// about 220 MB with 32.
///
/// # Examples
///
/// ```
/// use kstreams::{Application, Compression, RocksDbOptions};
///
/// // 256 MiB for RocksDB in all, memtables included.
/// let app = Application::builder()
///     .use_embedded_broker()
///     .rocksdb_options(
///         RocksDbOptions::default()
///             .block_cache_size(256 << 20)
///             .total_write_buffer_size(128 << 20)
///             .write_buffer_size(32 << 20)
///             .compression(Compression::Zstd),
///     )
///     .build()
///     .unwrap();
/// # drop(app);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct RocksDbOptions {
    block_cache_size: usize,
    total_write_buffer_size: usize,
    write_buffer_size: usize,
    compression: Compression,
}

impl Default for RocksDbOptions {
    fn default() -> Self {
        RocksDbOptions {
            block_cache_size: 64 << 20,
            total_write_buffer_size: 32 << 20,
            write_buffer_size: 8 << 20,
            compression: Compression::Lz4,
        }
    }
}

impl RocksDbOptions {
    /// Bytes of the LRU block cache that every partition's database of the
    /// application shares, the memtables' budget
    /// ([`total_write_buffer_size`](Self::total_write_buffer_size))
    /// included: about all the memory RocksDB takes, however many
    /// partitions are assigned. Default: 64 MiB.
    pub fn block_cache_size(mut self, bytes: usize) -> Self {
        self.block_cache_size = bytes;
        self
    }

    /// Bytes that the memtables (write buffers) of every partition and
    /// store may take together before RocksDB flushes the biggest ones to
    /// disk: a `WriteBufferManager` shared by the application's databases,
    /// whose memory is charged to the block cache (so it must stay below
    /// [`block_cache_size`](Self::block_cache_size): `build` refuses it
    /// otherwise). Default: 32 MiB.
    pub fn total_write_buffer_size(mut self, bytes: usize) -> Self {
        self.total_write_buffer_size = bytes;
        self
    }

    /// Bytes of one memtable before it is flushed (RocksDB's
    /// `write_buffer_size`), within
    /// [`total_write_buffer_size`](Self::total_write_buffer_size).
    /// Default: 8 MiB.
    pub fn write_buffer_size(mut self, bytes: usize) -> Self {
        self.write_buffer_size = bytes;
        self
    }

    /// Why these sizes cannot work together, naming the setting at fault.
    pub(crate) fn size_error(&self) -> Option<(&'static str, String)> {
        let (cache, total, one) = (
            self.block_cache_size,
            self.total_write_buffer_size,
            self.write_buffer_size,
        );
        if one == 0 || total == 0 {
            let key = if one == 0 {
                "write_buffer_size"
            } else {
                "total_write_buffer_size"
            };
            return Some((key, "must be above 0".to_string()));
        }
        if total >= cache {
            return Some((
                "total_write_buffer_size",
                format!(
                    "{total} bytes must stay below block_cache_size ({cache} bytes): the \
                     memtables are charged to the block cache, and would leave no room in it \
                     for the data they are flushed to"
                ),
            ));
        }
        if one > total {
            return Some((
                "write_buffer_size",
                format!(
                    "{one} bytes must not exceed total_write_buffer_size ({total} bytes), the \
                     budget of every memtable together"
                ),
            ));
        }
        None
    }

    /// Compression of data files. Default: [`Compression::Lz4`].
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }
}

/// [`RocksDbOptions`] with the block cache and the write buffer manager
/// made from them, once per application: every partition's database opens
/// with them. Cheap to clone; clones share the cache and the manager.
#[derive(Clone)]
pub(crate) struct StoreOptions {
    options: RocksDbOptions,
    cache: Cache,
    write_buffers: WriteBufferManager,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions::new(RocksDbOptions::default())
    }
}

/// The memtables' arena block size (RocksDB's default: 1/8 of the write
/// buffer).
const ARENA_BLOCK_SIZE: usize = 64 << 10;

impl StoreOptions {
    pub(crate) fn new(options: RocksDbOptions) -> Self {
        let cache = Cache::new_lru_cache(options.block_cache_size);
        // Not stalling writers over the budget: a checkpoint's write then
        // waits for no flush (the budget is exceeded by what is being
        // flushed, at most).
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            options.total_write_buffer_size,
            false,
            cache.clone(),
        );
        StoreOptions {
            options,
            cache,
            write_buffers,
        }
    }

    /// Bytes the memtables of every database opened with these options
    /// hold together, as the write buffer manager counts them.
    #[cfg(test)]
    pub(crate) fn write_buffer_usage(&self) -> usize {
        self.write_buffers.get_usage()
    }

    /// RocksDB options with these settings, for the database and each of
    /// its column families.
    pub(crate) fn to_rocksdb(&self) -> Options {
        let settings = &self.options;
        let mut options = Options::default();
        options.set_write_buffer_manager(&self.write_buffers);
        options.set_write_buffer_size(settings.write_buffer_size);
        options.set_compression_type(match settings.compression {
            Compression::None => DBCompressionType::None,
            Compression::Snappy => DBCompressionType::Snappy,
            Compression::Lz4 => DBCompressionType::Lz4,
            Compression::Zstd => DBCompressionType::Zstd,
        });
        // A bloom filter over the memtable's keys too: a new key (a new
        // window, a new message key) skips its search.
        options.set_memtable_whole_key_filtering(true);
        options.set_memtable_prefix_bloom_ratio(0.02);
        // Small arena blocks: the memtable's bloom (2 % of the write buffer)
        // is then allocated at its size, not in a block of 1/8 of the write
        // buffer (1 MiB): with RocksDB's default every empty memtable cost
        // that 1 MiB of the shared budget, so 16 partitions with one store
        // filled the 32 MiB before holding any data.
        options.set_arena_block_size(ARENA_BLOCK_SIZE);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.cache);
        // A read of a key that was never written (every new message key)
        // skips the data files instead of searching each of them, as Kafka
        // Streams' stores do.
        table.set_bloom_filter(10.0, false);
        // Filters and indexes live in the block cache, so memory stays
        // within it however big the store grows (those of the newest files
        // stay pinned there: they are read the most).
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        // In 4 KB partitions, under a small top level that stays pinned: a
        // whole filter of a big file (1.2 MB for a million keys) would
        // otherwise be read back and checksummed at every lookup once the
        // cache has no room for it.
        table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_partition_filters(true);
        table.set_metadata_block_size(4096);
        table.set_pin_top_level_index_and_filter(true);
        table.set_cache_index_and_filter_blocks_with_high_priority(true);
        options.set_block_based_table_factory(&table);
        options
    }
}
