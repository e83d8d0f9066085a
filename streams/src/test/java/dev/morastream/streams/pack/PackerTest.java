package dev.morastream.streams.pack;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.models.tokenizer.ByteTokenizer;
import dev.morastream.streams.records.DomainRecord;
import dev.morastream.streams.records.Rejected;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;

class PackerTest {
    static final int T = 15;
    static final int B = 3;
    static final TopicPartition P0 = new TopicPartition("t", 0);
    static final TopicPartition P1 = new TopicPartition("t", 1);

    /** The naive reference: every record framed and concatenated, in arrival order. */
    static List<Integer> reference(List<DomainRecord> recs) {
        List<Integer> out = new ArrayList<>();
        ByteTokenizer tok = new ByteTokenizer();
        for (DomainRecord r : recs) {
            out.add(ByteTokenizer.BOS);
            for (int id : tok.encode(r.isCompletion() ? r.prompt() + r.completion() : r.text())) {
                out.add(id);
            }
            out.add(ByteTokenizer.EOS);
        }
        return out;
    }

    static List<Integer> flatten(List<PackedBatch> batches) {
        List<Integer> out = new ArrayList<>();
        for (PackedBatch b : batches) {
            for (int i = 0; i < b.batch().tokens().length; i++) {
                for (int j = 0; j < T + 1; j++) {
                    boolean real = b.batch().targetMask() == null || j == 0 ? true : b.batch().targetMask()[i][j - 1] > 0;
                    if (real && b.batch().tokens()[i][j] != ByteTokenizer.PAD) {
                        out.add(b.batch().tokens()[i][j]);
                    }
                }
            }
        }
        return out;
    }

    static List<DomainRecord> records(int n, long seed) {
        Random rnd = new Random(seed);
        List<DomainRecord> recs = new ArrayList<>();
        long[] next = new long[2];
        for (int i = 0; i < n; i++) {
            int p = rnd.nextInt(2);
            String body = "r" + i + "-" + "x".repeat(rnd.nextInt(40));
            recs.add(DomainRecord.text("id" + i, "d", body, "t", p, next[p]++));
        }
        return recs;
    }

    @Test
    void batchesAreTheReferenceTokenStreamCutIntoRows() {
        List<DomainRecord> recs = records(200, 1);
        Packer packer = new Packer(new ByteTokenizer(), T, B);
        List<PackedBatch> out = new ArrayList<>();
        for (DomainRecord r : recs) {
            out.addAll(packer.add(r));
        }
        for (PackedBatch b : out) {
            assertEquals(B, b.batch().tokens().length);
            assertEquals(T + 1, b.batch().tokens()[0].length);
            assertNull(b.batch().targetMask());
            assertNull(b.batch().completionMask());
        }
        assertTrue(packer.bufferedTokens("d") < (long) B * (T + 1));
        out.addAll(packer.flush());
        assertEquals(0, packer.bufferedTokens("d"));
        assertEquals(reference(recs), flatten(out));
        List<String> ids = new ArrayList<>();
        out.forEach(b -> ids.addAll(b.completedIds()));
        assertEquals(recs.stream().map(DomainRecord::id).toList(), ids);
    }

    /**
     * A partition revoked from the consumer: the record of it a batch has split is finished (no
     * record is divided between two owners), its other buffered records are dropped (the next owner
     * reads them), and the other partition's records go on as if it had never been there.
     */
    @Test
    void releasingAPartitionFinishesItsSplitRecordAndDropsTheRestOfIt() {
        List<DomainRecord> recs = records(120, 3);
        for (int stop = 5; stop < 115; stop += 3) {
            Packer packer = new Packer(new ByteTokenizer(), T, B);
            List<PackedBatch> out = new ArrayList<>();
            for (int i = 0; i < stop; i++) {
                out.addAll(packer.add(recs.get(i)));
            }
            // the records with tokens in a batch already: a prefix of the arrival order
            int emitted = flatten(out).size();
            int started = 0;
            for (int seen = 0; started < stop && seen < emitted; started++) {
                seen += reference(List.of(recs.get(started))).size();
            }
            List<PackedBatch> released = packer.release(java.util.Set.of(P0));
            for (PackedBatch b : released) {
                assertTrue(b.ranges().keySet().stream().allMatch(P0::equals), "a finishing batch holds only the split record");
            }
            out.addAll(released);
            int afterRelease = out.size();
            for (int i = stop; i < recs.size(); i++) {
                if (recs.get(i).partition() == 1) { // the stream drops P0's records from now on
                    out.addAll(packer.add(recs.get(i)));
                }
            }
            out.addAll(packer.flush());
            List<DomainRecord> expected = new ArrayList<>();
            for (int i = 0; i < recs.size(); i++) {
                if (i < started || recs.get(i).partition() == 1) {
                    expected.add(recs.get(i));
                }
            }
            assertEquals(reference(expected), flatten(out), "released after " + stop + " records");
            List<String> ids = new ArrayList<>();
            out.forEach(b -> ids.addAll(b.completedIds()));
            assertEquals(expected.stream().map(DomainRecord::id).toList(), ids);
            for (PackedBatch b : out.subList(afterRelease, out.size())) {
                assertTrue(!b.resume().containsKey(P0), "P0 is forgotten after its release: " + b.resume());
            }
            assertTrue(!packer.partitions().contains(P0));
        }
    }

    @Test
    void resumingFromAnyBatchReproducesTheRestExactly() {
        List<DomainRecord> recs = records(150, 2);
        Packer whole = new Packer(new ByteTokenizer(), T, B);
        List<PackedBatch> all = new ArrayList<>();
        for (DomainRecord r : recs) {
            all.addAll(whole.add(r));
        }
        List<Integer> expected = flatten(all);
        for (int k = 0; k < all.size(); k += 3) {
            // a checkpoint after batch k: resume a fresh packer from its points and re-read everything after them
            Map<TopicPartition, ResumePoint> cp = all.get(k).resume();
            Packer resumed = new Packer(new ByteTokenizer(), T, B);
            resumed.resumeFrom("d", cp);
            List<PackedBatch> rest = new ArrayList<>();
            for (DomainRecord r : recs) {
                ResumePoint p = cp.get(new TopicPartition(r.topic(), r.partition()));
                if (p == null || r.offset() >= p.offset()) {
                    rest.addAll(resumed.add(r));
                }
            }
            List<Integer> got = new ArrayList<>(flatten(all.subList(0, k + 1)));
            got.addAll(flatten(rest));
            assertEquals(expected, got.subList(0, expected.size()), "resume after batch " + k);
        }
    }

    @Test
    void resumePointsOfPartitionsNotReadAgainAreKeptAndNeverMoveBack() {
        Packer packer = new Packer(new ByteTokenizer(), T, 1);
        packer.resumeFrom("d", Map.of(P0, ResumePoint.at(10), P1, ResumePoint.at(50)));
        // p1 is read again from the group's committed offset 40: records below 50 are dropped
        assertEquals(List.of(), packer.add(DomainRecord.text("old", "d", "z".repeat(40), "t", 1, 40)));
        List<PackedBatch> out = packer.add(DomainRecord.text("new", "d", "w".repeat(40), "t", 1, 50));
        assertEquals(2, out.size());
        assertEquals(ResumePoint.at(10), out.get(1).resume().get(P0));
        assertEquals(new ResumePoint(50, 32), out.get(1).resume().get(P1));
        packer.add(new Rejected(Rejected.Reason.EMPTY, "", new ConsumerRecord<>("t", 0, 4, null, new byte[0])));
        out = packer.add(DomainRecord.text("more", "d", "v".repeat(40), "t", 1, 51));
        assertEquals(ResumePoint.at(10), out.get(0).resume().get(P0), "a re-read below the point does not move it back");
    }

    @Test
    void offsetRangesAndResumePointsCoverWhatTheBatchHolds() {
        Packer packer = new Packer(new ByteTokenizer(), T, 1);
        // a 30-token record on p0 spans two rows; a rejected record on p1 is skipped over
        List<PackedBatch> b1 = packer.add(DomainRecord.text("a", "d", "x".repeat(28), "t", 0, 5));
        assertEquals(1, b1.size());
        assertEquals(new OffsetRange(5, 5), b1.get(0).ranges().get(P0));
        assertEquals(new ResumePoint(5, 16), b1.get(0).resume().get(P0));
        packer.add(new Rejected(Rejected.Reason.EMPTY, "", new ConsumerRecord<>("t", 1, 9, null, new byte[0])));
        List<PackedBatch> b2 = packer.add(DomainRecord.text("b", "d", "y".repeat(3), "t", 0, 6));
        assertEquals(1, b2.size());
        assertEquals(List.of("a"), b2.get(0).completedIds());
        assertEquals(new OffsetRange(5, 6), b2.get(0).ranges().get(P0));
        assertEquals(new ResumePoint(6, 2), b2.get(0).resume().get(P0));
        assertEquals(ResumePoint.at(10), b2.get(0).resume().get(P1));
        assertEquals(Map.of(P0, 6L, P1, 10L), b2.get(0).resumeOffsets());
        assertEquals(ResumePoint.parse("6:2"), b2.get(0).resume().get(P0));
    }

    @Test
    void resumePointsRoundTripThroughCheckpointMetadata() {
        Map<TopicPartition, ResumePoint> points = Map.of(new TopicPartition("a.b-c", 12), new ResumePoint(7, 3), P0, ResumePoint.at(0));
        Map<String, String> md = new java.util.HashMap<>(ResumePoint.toMetadata(points));
        assertEquals("7:3", md.get("kafka.offset.a.b-c.12"));
        md.put("step", "42");
        assertEquals(points, ResumePoint.fromMetadata(md));
    }

    @Test
    void completionMaskCoversCompletionTargetsOnly() {
        Packer packer = new Packer(new ByteTokenizer(), 7, 1);
        List<PackedBatch> out = packer.add(DomainRecord.completion("q", "d", "abc", "xyzw", "t", 0, 0));
        // BOS a b c x y z w | EOS
        assertEquals(1, out.size());
        assertArrayEquals(new int[] {256, 'a', 'b', 'c', 'x', 'y', 'z', 'w'}, out.get(0).batch().tokens()[0]);
        float[] mask = out.get(0).batch().completionMask()[0];
        assertNotNull(mask);
        assertArrayEquals(new float[] {0, 0, 0, 1, 1, 1, 1}, mask);
        List<PackedBatch> tail = packer.flush();
        assertEquals(1, tail.size());
        assertEquals(257, tail.get(0).batch().tokens()[0][0]);
        assertEquals(0f, tail.get(0).batch().targetMask()[0][0]); // EOS, then padding only
    }
}
