package dev.morastream.streams.replay;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.models.tokenizer.ByteTokenizer;
import dev.morastream.models.train.TrainBatch;
import dev.morastream.streams.pack.OffsetRange;
import dev.morastream.streams.pack.PackedBatch;
import dev.morastream.streams.pack.ResumePoint;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;

class ReplayMixerTest {
    private static final int T = 31;
    private static final int B = 8;
    private static final TopicPartition TP = new TopicPartition("t", 0);

    /** Batch {@code seq} of {@code domain}: every token of row i is a marker {@code 1000 * seq + i} (unique). */
    private static PackedBatch batch(String domain, long seq) {
        int[][] tokens = new int[B][T + 1];
        for (int i = 0; i < B; i++) {
            java.util.Arrays.fill(tokens[i], (int) (1000 * seq + i + 1000));
        }
        return new PackedBatch(domain, TrainBatch.of(tokens), Map.of(TP, new OffsetRange(10 * seq, 10 * seq + 10)),
                Map.of(TP, new ResumePoint(10 * seq + 10, 3)), List.of("id-" + seq), seq);
    }

    private static List<int[]> generalRows() {
        return ReplayMixer.generalRows(new ByteTokenizer(), T, 200, 0);
    }

    @Test
    void theFractionOfReplayedRowsIsRespected() {
        for (double f : new double[] {0.1, 0.25, 0.5}) {
            ReplayMixer m = new ReplayMixer(new ReplayMixer.Config(f, 64, 0.5, 200, 1), generalRows());
            long total = 0;
            long replayed = 0;
            for (int s = 0; s < 2000; s++) {
                PackedBatch out = m.mix(batch("law", s));
                total += out.batch().tokens().length;
                replayed += out.batch().tokens().length - B;
            }
            assertEquals(replayed, m.replayedRows());
            assertEquals(f, replayed / (double) total, 0.01, "fraction " + f);
        }
        ReplayMixer off = new ReplayMixer(new ReplayMixer.Config(0, 64, 0.5, 200, 1), generalRows());
        PackedBatch b = batch("law", 0);
        assertSame(b, off.mix(b));
    }

    @Test
    void newRowsAndTheOffsetsOfABatchAreUnchangedAndReplayedRowsAreEarlierOrGeneral() {
        ReplayMixer m = new ReplayMixer(new ReplayMixer.Config(0.3, 16, 0.5, 200, 7), generalRows());
        Set<String> general = new HashSet<>();
        for (int[] r : generalRows()) {
            general.add(java.util.Arrays.toString(r));
        }
        int fromDomain = 0;
        int fromGeneral = 0;
        for (int s = 0; s < 300; s++) {
            PackedBatch in = batch("law", s);
            PackedBatch out = m.mix(in);
            assertEquals(in.domain(), out.domain());
            assertEquals(in.ranges(), out.ranges());
            assertEquals(in.resume(), out.resume());
            assertEquals(in.resumeOffsets(), out.resumeOffsets());
            assertEquals(in.completedIds(), out.completedIds());
            assertEquals(in.sequence(), out.sequence());
            int[][] tokens = out.batch().tokens();
            for (int i = 0; i < B; i++) {
                assertArrayEquals(in.batch().tokens()[i], tokens[i], "new row " + i);
            }
            for (int i = B; i < tokens.length; i++) {
                int marker = tokens[i][0];
                if (marker >= 1000) {
                    assertTrue(marker < 1000 * s + 1000, "replayed row " + marker + " is not from an earlier batch than " + s);
                    fromDomain++;
                } else {
                    assertTrue(general.contains(java.util.Arrays.toString(tokens[i])), "neither domain nor general row");
                    fromGeneral++;
                }
            }
            assertTrue(m.reservoirSize("law") <= 16);
        }
        assertTrue(fromDomain > 0 && fromGeneral > 0, fromDomain + " domain, " + fromGeneral + " general rows");
        assertEquals(0.5, fromGeneral / (double) (fromDomain + fromGeneral), 0.1);
    }

    @Test
    void domainsAreReplayedOnlyIntoThemselves() {
        ReplayMixer m = new ReplayMixer(new ReplayMixer.Config(0.5, 16, 0.0, 200, 3), generalRows());
        for (int s = 0; s < 100; s++) {
            boolean med = s % 2 == 1;
            PackedBatch out = m.mix(batch(med ? "med" : "law", s));
            for (int i = B; i < out.batch().tokens().length; i++) {
                int marker = out.batch().tokens()[i][0];
                int seq = (marker - 1000) / 1000;
                if (marker >= 1000) {
                    assertEquals(med, seq % 2 == 1, "row of batch " + seq + " replayed into batch " + s);
                }
            }
        }
    }

    @Test
    void masksAreFilledForRowsThatHaveNone() {
        ReplayMixer m = new ReplayMixer(new ReplayMixer.Config(0.5, 16, 1.0, 200, 3), generalRows());
        float[][] target = new float[B][T];
        float[][] completion = new float[B][T];
        for (int i = 0; i < B; i++) {
            java.util.Arrays.fill(target[i], i == B - 1 ? 0f : 1f);
            java.util.Arrays.fill(completion[i], 0.5f);
        }
        PackedBatch in = batch("qa", 0);
        in = new PackedBatch("qa", new TrainBatch(in.batch().tokens(), target, completion), in.ranges(), in.resume(), in.completedIds(), 0);
        PackedBatch out = m.mix(in);
        TrainBatch tb = out.batch();
        assertTrue(tb.tokens().length > B);
        assertNotNull(tb.targetMask());
        assertNotNull(tb.completionMask());
        assertArrayEquals(target[B - 1], tb.targetMask()[B - 1]);
        for (int i = B; i < tb.tokens().length; i++) {
            for (int j = 0; j < T; j++) {
                assertEquals(1f, tb.targetMask()[i][j]);
                assertEquals(1f, tb.completionMask()[i][j]);
            }
        }
        // a batch without masks and general rows without masks stays without masks
        PackedBatch plain = m.mix(batch("law", 1));
        assertNull(plain.batch().targetMask());
        assertNull(plain.batch().completionMask());
    }

    @Test
    void isDeterministicForASeed() {
        List<int[][]> a = run(5);
        List<int[][]> b = run(5);
        assertEquals(a.size(), b.size());
        for (int i = 0; i < a.size(); i++) {
            assertArrayEquals(a.get(i), b.get(i));
        }
        List<int[][]> c = run(6);
        boolean differs = false;
        for (int i = 0; i < a.size() && !differs; i++) {
            differs = !java.util.Arrays.deepEquals(a.get(i), c.get(i));
        }
        assertTrue(differs, "another seed gives another mix");
    }

    private static List<int[][]> run(long seed) {
        ReplayMixer m = new ReplayMixer(new ReplayMixer.Config(0.2, 8, 0.5, 200, seed), generalRows());
        List<int[][]> out = new ArrayList<>();
        for (int s = 0; s < 100; s++) {
            out.add(m.mix(batch("law", s)).batch().tokens());
        }
        return out;
    }

    @Test
    void generalRowsComeFromTheSyntheticCorpusFramedWithBosAndEos() {
        List<int[]> rows = generalRows();
        assertTrue(rows.size() > 50);
        assertEquals(ByteTokenizer.BOS, rows.get(0)[0]);
        long eos = rows.stream().flatMapToInt(java.util.Arrays::stream).filter(t -> t == ByteTokenizer.EOS).count();
        assertTrue(eos > 100, eos + " documents ended");
        String text = new ByteTokenizer().decode(java.util.Arrays.copyOfRange(rows.get(0), 1, T + 1));
        assertTrue(text.chars().allMatch(ch -> ch < 128), text);
    }

    @Test
    void rehearsalRowsAreDrawnForTheirShareAndGeneralAndRehearsalRowsAreBaseRows() {
        List<int[]> reh = new ArrayList<>();
        List<float[]> comp = new ArrayList<>();
        for (int i = 0; i < 10; i++) {
            int[] r = new int[T + 1];
            java.util.Arrays.fill(r, 7_000_000 + i);
            reh.add(r);
            float[] c = new float[T];
            c[T - 1] = 1f;
            comp.add(c);
        }
        ReplayMixer m = new ReplayMixer(new ReplayMixer.Config(0.5, 64, 0.3, 200, 3, 0.6), generalRows(),
                new dev.morastream.models.train.PseudoRehearsal.Rows(reh, comp));
        Set<String> general = new HashSet<>();
        for (int[] r : generalRows()) {
            general.add(java.util.Arrays.toString(r));
        }
        int rehearsal = 0;
        int gen = 0;
        int own = 0;
        for (int s = 0; s < 1000; s++) {
            PackedBatch out = m.mix(batch("law", s));
            TrainBatch b = out.batch();
            for (int i = 0; i < b.tokens().length; i++) {
                int first = b.tokens()[i][0];
                if (i < B) {
                    assertTrue(!b.baseRow(i), "a new row is no base row");
                    assertTrue(b.completionMask() == null || b.completionMask()[i][0] == 1f, "a text row's targets all count");
                } else if (first >= 7_000_000) {
                    rehearsal++;
                    assertTrue(b.baseRow(i), "rehearsal rows are base rows");
                    assertArrayEquals(comp.get(first - 7_000_000), b.completionMask()[i], "the rehearsal row keeps its answer mask");
                } else if (general.contains(java.util.Arrays.toString(b.tokens()[i]))) {
                    gen++;
                    assertTrue(b.baseRow(i), "general rows are base rows");
                } else {
                    own++;
                    assertTrue(!b.baseRow(i), "earlier rows of the domain are no base rows");
                }
            }
        }
        double replayed = rehearsal + gen + own;
        assertEquals(0.6, rehearsal / replayed, 0.03);
        assertEquals(0.3, gen / replayed, 0.03);
        assertEquals(0.1, own / replayed, 0.03);
    }

    @Test
    void sharesThatDoNotAddUpAreRefused() {
        IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                () -> new ReplayMixer.Config(0.5, 64, 0.6, 200, 3, 0.6));
        assertTrue(e.getMessage().contains("at most 1"), e.getMessage());
    }
}
