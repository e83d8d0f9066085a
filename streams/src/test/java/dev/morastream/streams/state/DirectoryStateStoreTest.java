package dev.morastream.streams.state;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DirectoryStateStoreTest extends StateStoreContract {
    @TempDir
    Path dir;

    @Override
    StateStore openStore() {
        return DirectoryStateStore.open(dir.resolve("state"));
    }

    @Test
    void oneOpenStoreAtATime() {
        open();
        StateStoreException e = assertThrows(StateStoreException.class, this::openStore);
        assertTrue(e.getMessage().contains("held by another open store"), e.getMessage());
    }

    @Test
    void aDamagedFileReadsAsAbsentAndIsReported() throws Exception {
        StateStore s = open();
        s.commit(Map.of("good", utf8("fine"), "bad", utf8("original"), "gone", utf8("x")), Set.of());
        s.close();
        Path blobs = dir.resolve("state").resolve("blobs");
        List<Path> files;
        try (Stream<Path> l = Files.list(blobs)) {
            files = l.sorted().toList();
        }
        // commit order is key order: bad, gone, good
        Files.writeString(files.get(0), "tampered");
        Files.delete(files.get(1));
        StateStore again = open();
        assertTrue(again.get("bad").isEmpty());
        assertTrue(again.get("gone").isEmpty());
        assertEquals("fine", text(again.get("good")));
        assertTrue(again.damaged().get("bad").contains("SHA-256") || again.damaged().get("bad").contains("bytes"), again.damaged().toString());
        assertTrue(again.damaged().get("gone").contains("missing"), again.damaged().toString());
        assertEquals(List.of("good"), again.keys(""));
        again.put("bad", utf8("rewritten"));
        assertEquals("rewritten", text(again.get("bad")));
        assertEquals(Set.of("gone"), again.damaged().keySet());
    }

    @Test
    void leftoversOfACrashedCommitAreCollected() throws Exception {
        try (StateStore s = openStore()) {
            s.put("k", utf8("v"));
        }
        Path blobs = dir.resolve("state").resolve("blobs");
        Files.writeString(blobs.resolve("deadbeef-0"), "half a commit");
        Files.writeString(dir.resolve("state").resolve("state.json.tmp"), "{");
        StateStore again = open();
        assertEquals("v", text(again.get("k")));
        assertTrue(Files.notExists(blobs.resolve("deadbeef-0")));
        assertTrue(Files.notExists(dir.resolve("state").resolve("state.json.tmp")));
    }
}
