//! A minimal slab: O(1) insert and remove by key, keys reused.
//!
//! Written here rather than taken from the `slab` crate to keep the core's dependency list at
//! tokio + pin-project-lite; it is twenty lines and only ever used under a node lock.

#[derive(Debug)]
pub(crate) struct Slab<T> {
    entries: Vec<Entry<T>>,
    next_free: usize,
    len: usize,
}

#[derive(Debug)]
enum Entry<T> {
    Occupied(T),
    Vacant(usize),
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            entries: Vec::new(),
            next_free: 0,
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    pub(crate) fn insert(&mut self, value: T) -> usize {
        let key = self.next_free;
        self.len += 1;
        if key == self.entries.len() {
            self.entries.push(Entry::Occupied(value));
            self.next_free = key + 1;
        } else {
            match std::mem::replace(&mut self.entries[key], Entry::Occupied(value)) {
                Entry::Vacant(next) => self.next_free = next,
                Entry::Occupied(_) => unreachable!("free list points at an occupied entry"),
            }
        }
        key
    }

    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        match self.entries.get_mut(key) {
            Some(Entry::Occupied(v)) => Some(v),
            _ => None,
        }
    }

    pub(crate) fn remove(&mut self, key: usize) -> Option<T> {
        match self.entries.get_mut(key) {
            Some(e @ Entry::Occupied(_)) => {
                let Entry::Occupied(v) = std::mem::replace(e, Entry::Vacant(self.next_free)) else {
                    unreachable!()
                };
                self.next_free = key;
                self.len -= 1;
                if self.len == 0 {
                    // Start over so a node that sees waves of waiters does not keep a long free list.
                    self.entries.clear();
                    self.next_free = 0;
                }
                Some(v)
            }
            _ => None,
        }
    }

    pub(crate) fn drain(&mut self) -> impl Iterator<Item = T> {
        self.next_free = 0;
        self.len = 0;
        std::mem::take(&mut self.entries)
            .into_iter()
            .filter_map(|e| match e {
                Entry::Occupied(v) => Some(v),
                Entry::Vacant(_) => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::Slab;

    #[test]
    fn insert_remove_reuse() {
        let mut s = Slab::default();
        let a = s.insert('a');
        let b = s.insert('b');
        let c = s.insert('c');
        assert_eq!(s.remove(b), Some('b'));
        assert_eq!(s.remove(b), None);
        let d = s.insert('d');
        assert_eq!(d, b, "freed key is reused");
        assert_eq!(s.len, 3);
        assert_eq!(s.get_mut(a), Some(&mut 'a'));
        let mut all: Vec<_> = s.drain().collect();
        all.sort();
        assert_eq!(all, vec!['a', 'c', 'd']);
        assert_eq!(s.len, 0);
        let _ = c;
    }
}
