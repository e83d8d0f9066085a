package dev.morastream.streams.state;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * What every {@link StateStore} does, run against each implementation. A subclass gives each test
 * a fresh place (directory, topic) and {@link #open()} opens a store on it (again, after a close:
 * a persistent store then has the same state).
 */
abstract class StateStoreContract {
    private final List<StateStore> opened = new ArrayList<>();

    /** A store on this test's place. */
    abstract StateStore openStore();

    /** Whether a store opened again on the same place has the same state. */
    boolean persistent() {
        return true;
    }

    StateStore open() {
        StateStore s = openStore();
        opened.add(s);
        return s;
    }

    @AfterEach
    void closeStores() {
        opened.forEach(StateStore::close);
    }

    static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static String text(Optional<byte[]> v) {
        return v.map(b -> new String(b, StandardCharsets.UTF_8)).orElse(null);
    }

    static byte[] random(int n, long seed) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }

    @Test
    void putGetDelete() {
        StateStore s = open();
        assertTrue(s.get("a").isEmpty());
        s.put("a", utf8("one"));
        assertEquals("one", text(s.get("a")));
        s.put("a", utf8("two"));
        assertEquals("two", text(s.get("a")));
        s.delete("a");
        assertTrue(s.get("a").isEmpty());
        s.delete("never-there"); // allowed, does nothing
        assertEquals(List.of(), s.keys(""));
        assertEquals(Map.of(), s.damaged());
    }

    @Test
    void keysByPrefixInOrder() {
        StateStore s = open();
        s.commit(Map.of("checkpoints/b/adapter", utf8("1"), "checkpoints/a/adapter", utf8("2"), "checkpoints/a/offsets", utf8("3"),
                "aliases/a", utf8("4"), "checkpoints", utf8("5")), Set.of());
        assertEquals(List.of("checkpoints/a/adapter", "checkpoints/a/offsets"), s.keys("checkpoints/a/"));
        assertEquals(List.of("checkpoints", "checkpoints/a/adapter", "checkpoints/a/offsets", "checkpoints/b/adapter"), s.keys("checkpoints"));
        assertEquals(List.of("aliases/a", "checkpoints", "checkpoints/a/adapter", "checkpoints/a/offsets", "checkpoints/b/adapter"), s.keys(""));
        assertEquals(List.of(), s.keys("zzz"));
    }

    @Test
    void aCommitPutsAndDeletesTogether() {
        StateStore s = open();
        s.commit(Map.of("ckpt/adapter", utf8("a1"), "ckpt/optimizer", utf8("o1"), "ckpt/old", utf8("x")), Set.of());
        s.commit(Map.of("ckpt/adapter", utf8("a2"), "ckpt/optimizer", utf8("o2")), Set.of("ckpt/old", "ckpt/absent"));
        Map<String, byte[]> all = s.getAll(List.of("ckpt/adapter", "ckpt/optimizer", "ckpt/old"));
        assertEquals(Set.of("ckpt/adapter", "ckpt/optimizer"), all.keySet());
        assertEquals("a2", new String(all.get("ckpt/adapter"), StandardCharsets.UTF_8));
        assertEquals("o2", new String(all.get("ckpt/optimizer"), StandardCharsets.UTF_8));
        assertEquals(List.of("ckpt/adapter", "ckpt/optimizer"), s.keys("ckpt/"));
        s.commit(Map.of(), Set.of("absent-only")); // nothing to do
        assertEquals(2, s.keys("").size());
    }

    @Test
    void aLargeValueOfSeveralMegabytesAndAnOverwriteWithFewerChunks() {
        StateStore s = open();
        byte[] big = random(6 * 1024 * 1024 + 123, 1);
        byte[] other = random(3 * 1024 * 1024, 2);
        s.commit(Map.of("big", big, "other", other), Set.of());
        assertArrayEquals(big, s.get("big").orElseThrow());
        assertArrayEquals(other, s.get("other").orElseThrow());
        byte[] small = random(1000, 3);
        s.put("big", small);
        assertArrayEquals(small, s.get("big").orElseThrow());
        s.put("big", new byte[0]);
        assertArrayEquals(new byte[0], s.get("big").orElseThrow());
        assertArrayEquals(other, s.get("other").orElseThrow());
        assertEquals(List.of("big", "other"), s.keys(""));
    }

    @Test
    void anEmptyValueIsAValue() {
        StateStore s = open();
        s.put("empty", new byte[0]);
        assertEquals(Optional.of(0), s.get("empty").map(b -> b.length));
        assertEquals(List.of("empty"), s.keys(""));
    }

    @Test
    void valuesInAndOutAreCopies() {
        StateStore s = open();
        byte[] v = utf8("abc");
        s.put("k", v);
        v[0] = 'X';
        byte[] out = s.get("k").orElseThrow();
        out[1] = 'Y';
        assertEquals("abc", text(s.get("k")));
    }

    @Test
    void badArgumentsAreRefused() {
        StateStore s = open();
        assertThrows(IllegalArgumentException.class, () -> s.put("", utf8("x")));
        assertThrows(IllegalArgumentException.class, () -> s.put("a\nb", utf8("x")));
        Map<String, byte[]> nullValue = new HashMap<>();
        nullValue.put("k", null);
        assertThrows(IllegalArgumentException.class, () -> s.commit(nullValue, Set.of()));
        assertThrows(IllegalArgumentException.class, () -> s.commit(Map.of("k", utf8("x")), Set.of("k")));
        assertThrows(IllegalArgumentException.class, () -> s.get(""));
        assertTrue(s.keys("").isEmpty());
    }

    @Test
    void reopenedOnTheSamePlaceItHasTheSameState() {
        assumeTrue(persistent(), "not persistent");
        byte[] big = random(2 * 1024 * 1024 + 7, 4);
        Map<String, byte[]> expected = new LinkedHashMap<>();
        try (StateStore s = openStore()) {
            s.commit(Map.of("a", utf8("1"), "b", big, "c", utf8("3")), Set.of());
            s.commit(Map.of("a", utf8("one"), "e", new byte[0]), Set.of("c"));
            expected.put("a", utf8("one"));
            expected.put("b", big);
            expected.put("e", new byte[0]);
        }
        StateStore again = open();
        assertEquals(List.of("a", "b", "e"), again.keys(""));
        expected.forEach((k, v) -> assertArrayEquals(v, again.get(k).orElseThrow(), k));
        assertTrue(again.get("c").isEmpty());
        again.put("a", utf8("after"));
        assertEquals("after", text(again.get("a")));
        assertEquals(Map.of(), again.damaged());
    }
}
