//! Changelog records on their way into a store during recovery: copied out
//! of the fetched messages into one buffer, then written in key order, the
//! last record of each key only. RocksDB's memtable inserts keys that come
//! in order much faster than random ones (each insert starts its search
//! where the previous one ended), and a key written twice in a batch costs
//! one write.

/// The records of one batch, in changelog order.
#[derive(Default)]
pub(crate) struct ChangelogBatch {
    /// Keys and values, back to back.
    bytes: Vec<u8>,
    records: Vec<Record>,
}

/// Where a record's key and value are in the batch's bytes.
struct Record {
    start: usize,
    key_len: usize,
    /// `None`: a tombstone.
    value_len: Option<usize>,
}

impl ChangelogBatch {
    /// Records added since the batch was made or taken.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Adds a record: a put, or a delete for a tombstone (`None`).
    pub(crate) fn add(&mut self, key: &[u8], value: Option<&[u8]>) {
        self.records.push(Record {
            start: self.bytes.len(),
            key_len: key.len(),
            value_len: value.map(<[u8]>::len),
        });
        self.bytes.extend_from_slice(key);
        self.bytes.extend_from_slice(value.unwrap_or_default());
    }

    /// The records in key order, for each key only the last one added.
    pub(crate) fn in_key_order(&self) -> Vec<(&[u8], Option<&[u8]>)> {
        let mut order: Vec<usize> = (0..self.records.len()).collect();
        // Equal keys stay in the order they were added.
        order.sort_unstable_by(|&a, &b| self.key(a).cmp(self.key(b)).then(a.cmp(&b)));
        let mut records: Vec<(&[u8], Option<&[u8]>)> = Vec::with_capacity(order.len());
        for index in order {
            let record = (self.key(index), self.value(index));
            match records.last_mut() {
                Some(last) if last.0 == record.0 => *last = record,
                _ => records.push(record),
            }
        }
        records
    }

    /// Takes the records out, leaving an empty batch with room for as many.
    pub(crate) fn take(&mut self) -> Self {
        let empty = ChangelogBatch {
            bytes: Vec::with_capacity(self.bytes.capacity()),
            records: Vec::with_capacity(self.records.capacity()),
        };
        std::mem::replace(self, empty)
    }

    fn key(&self, index: usize) -> &[u8] {
        let record = &self.records[index];
        &self.bytes[record.start..record.start + record.key_len]
    }

    fn value(&self, index: usize) -> Option<&[u8]> {
        let record = &self.records[index];
        let start = record.start + record.key_len;
        record.value_len.map(|len| &self.bytes[start..start + len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_in_key_order_with_the_last_write_of_each_key() {
        let mut batch = ChangelogBatch::default();
        batch.add(b"b", Some(b"1"));
        batch.add(b"a", Some(b"2"));
        batch.add(b"b", None);
        batch.add(b"c", Some(b""));
        batch.add(b"a", Some(b"3"));
        assert_eq!(batch.len(), 5);
        assert_eq!(
            batch.in_key_order(),
            [
                (&b"a"[..], Some(&b"3"[..])),
                (&b"b"[..], None),
                (&b"c"[..], Some(&b""[..])),
            ]
        );
        let taken = batch.take();
        assert_eq!((taken.len(), batch.len()), (5, 0));
        assert!(batch.in_key_order().is_empty());
    }
}
