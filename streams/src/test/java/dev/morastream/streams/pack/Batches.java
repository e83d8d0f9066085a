package dev.morastream.streams.pack;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.List;

/** Field-by-field equality of packed batches (a {@link dev.morastream.models.train.TrainBatch} holds arrays). */
public final class Batches {
    private Batches() {}

    public static void assertSame(List<PackedBatch> expected, List<PackedBatch> actual) {
        assertEquals(expected.size(), actual.size(), "batches");
        for (int i = 0; i < expected.size(); i++) {
            PackedBatch e = expected.get(i);
            PackedBatch a = actual.get(i);
            String at = "batch " + i + " of " + e.domain();
            assertEquals(e.domain(), a.domain(), at);
            assertEquals(e.sequence(), a.sequence(), at);
            assertArrayEquals(e.batch().tokens(), a.batch().tokens(), at + ": tokens");
            assertArrayEquals(e.batch().targetMask(), a.batch().targetMask(), at + ": target mask");
            assertArrayEquals(e.batch().completionMask(), a.batch().completionMask(), at + ": completion mask");
            assertEquals(e.ranges(), a.ranges(), at + ": ranges");
            assertEquals(e.resume(), a.resume(), at + ": resume points");
            assertEquals(e.completedIds(), a.completedIds(), at + ": completed ids");
        }
    }
}
