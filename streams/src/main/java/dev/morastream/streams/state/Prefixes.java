package dev.morastream.streams.state;

import java.util.NavigableMap;
import java.util.SortedMap;

/** Prefix ranges of sorted string maps. */
final class Prefixes {
    private Prefixes() {}

    /** The entries of {@code map} whose key starts with {@code prefix} (a view). */
    static <V> SortedMap<String, V> view(NavigableMap<String, V> map, String prefix) {
        if (prefix == null || prefix.isEmpty()) {
            return map;
        }
        // every string that starts with prefix sorts in [prefix, prefix + U+FFFF)
        return map.subMap(prefix, true, prefix + Character.MAX_VALUE, false);
    }
}
