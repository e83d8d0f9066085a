package dev.morastream.streams.pack;

import dev.morastream.models.tokenizer.ByteTokenizer;
import dev.morastream.streams.records.DecodeResult;
import dev.morastream.streams.records.DomainRecord;
import dev.morastream.streams.records.Rejected;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;

/**
 * The packer's span-at-a-time batches against the token-by-token reference ({@link Packer#naive}),
 * with records given as framed ids and as byte-level ids that the packer frames.
 */
class FastPackerTest {
    @Test
    void cutsTheSameBatchesAsTheReference() {
        for (int[] shape : new int[][] {{15, 3}, {1, 1}, {7, 1}, {255, 8}, {4, 5}}) {
            for (long seed = 0; seed < 6; seed++) {
                Packer fast = new Packer(new ByteTokenizer(), shape[0], shape[1]);
                Packer naive = Packer.naive(new ByteTokenizer(), shape[0], shape[1]);
                Random rnd = new Random(seed);
                List<PackedBatch> a = new ArrayList<>();
                List<PackedBatch> b = new ArrayList<>();
                TopicPartition[] tps = {new TopicPartition("t", 0), new TopicPartition("t", 1), new TopicPartition("u", 0)};
                long[] next = new long[tps.length];
                for (String d : List.of("d", "e")) { // a checkpoint that split a record of partition 1
                    Map<TopicPartition, ResumePoint> points = Map.of(tps[1], new ResumePoint(2, 3));
                    fast.resumeFrom(d, points);
                    naive.resumeFrom(d, points);
                }
                for (int i = 0; i < 400; i++) {
                    int p = rnd.nextInt(tps.length);
                    long off = next[p]++;
                    String domain = rnd.nextInt(3) == 0 ? "e" : "d";
                    DecodeResult r = switch (rnd.nextInt(5)) {
                        case 0 -> new Rejected(Rejected.Reason.EMPTY, "", new ConsumerRecord<>(tps[p].topic(), tps[p].partition(), off, null, new byte[0]));
                        case 1 -> DomainRecord.completion("c" + i, domain, text(rnd), text(rnd), tps[p].topic(), tps[p].partition(), off);
                        default -> DomainRecord.text("r" + i, domain, text(rnd), tps[p].topic(), tps[p].partition(), off);
                    };
                    Packer.Encoded enc = r instanceof DomainRecord rec ? fast.encode(rec) : null;
                    if (enc != null && rnd.nextBoolean()) { // the same record as byte-level ids, framed by the packer
                        DomainRecord rec = (DomainRecord) r;
                        byte[] bytes = (rec.isCompletion() ? rec.prompt() + rec.completion() : rec.text()).getBytes(java.nio.charset.StandardCharsets.UTF_8);
                        enc = Packer.Encoded.ofBytes(enc.tp(), enc.offset(), enc.id(), enc.domain(), enc.completion(), bytes, enc.promptEnd());
                    }
                    a.addAll(fast.add(r, enc));
                    b.addAll(naive.add(r));
                    int what = rnd.nextInt(40);
                    if (what == 0) {
                        a.addAll(fast.flushIdle());
                        b.addAll(naive.flushIdle());
                    } else if (what == 1) {
                        Set<TopicPartition> gone = Set.of(tps[rnd.nextInt(tps.length)]);
                        Map<String, Map<TopicPartition, Long>> pa = new HashMap<>();
                        Map<String, Map<TopicPartition, Long>> pb = new HashMap<>();
                        a.addAll(fast.release(gone, Set.of("d", "e"), pa));
                        b.addAll(naive.release(gone, Set.of("d", "e"), pb));
                        org.junit.jupiter.api.Assertions.assertEquals(pb, pa);
                    }
                }
                a.addAll(fast.flush());
                b.addAll(naive.flush());
                Batches.assertSame(b, a);
            }
        }
    }

    private static String text(Random rnd) {
        int n = rnd.nextInt(4) == 0 ? rnd.nextInt(300) : rnd.nextInt(20);
        StringBuilder sb = new StringBuilder();
        for (int k = 0; k < n; k++) {
            sb.append(rnd.nextInt(10) == 0 ? 'é' : (char) ('a' + rnd.nextInt(26)));
        }
        return sb.toString();
    }
}
