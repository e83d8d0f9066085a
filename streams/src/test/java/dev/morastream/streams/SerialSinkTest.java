package dev.morastream.streams;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.models.train.TrainBatch;
import dev.morastream.streams.pack.PackedBatch;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;

/**
 * The stream's gate to the trainers: a domain's batches reach its trainer one at a time and in
 * order, different domains' trainers take theirs at the same time (no global serialisation), and
 * a flush comes after every batch accepted before it, of every domain.
 */
class SerialSinkTest {
    static PackedBatch batch(String domain, long seq) {
        return new PackedBatch(domain, TrainBatch.of(new int[][] {{1, 2, 3}}), Map.of(), Map.of(), List.of(), seq);
    }

    /** A sink whose calls complete when the test says so. */
    static final class Manual implements BatchSink {
        final List<String> calls = new ArrayList<>();
        final List<CompletableFuture<Map<TopicPartition, Long>>> pending = new ArrayList<>();
        final List<CompletableFuture<Map<String, Map<TopicPartition, Long>>>> flushes = new ArrayList<>();

        @Override
        public synchronized CompletionStage<Map<TopicPartition, Long>> accept(PackedBatch b) {
            calls.add(b.domain() + b.sequence());
            CompletableFuture<Map<TopicPartition, Long>> f = new CompletableFuture<>();
            pending.add(f);
            return f;
        }

        @Override
        public synchronized CompletionStage<Map<String, Map<TopicPartition, Long>>> flush() {
            calls.add("flush");
            CompletableFuture<Map<String, Map<TopicPartition, Long>>> f = new CompletableFuture<>();
            flushes.add(f);
            return f;
        }
    }

    @Test
    void domainsTakeBatchesAtOnceEachInOrderAndAFlushWaitsForAll() {
        Manual sink = new Manual();
        Rebalancer.SerialSink s = new Rebalancer.SerialSink(sink);
        CompletableFuture<?> a0 = s.accept(batch("alpha", 0));
        CompletableFuture<?> b0 = s.accept(batch("beta", 0));
        CompletableFuture<?> a1 = s.accept(batch("alpha", 1));
        // alpha0 and beta0 are both at their trainers; alpha1 waits for alpha0
        assertEquals(List.of("alpha0", "beta0"), sink.calls);
        CompletableFuture<?> flush = s.flush();
        CompletableFuture<?> g0 = s.accept(batch("gamma", 0)); // a domain first seen after the flush waits for it
        sink.pending.get(0).complete(Map.of());
        assertTrue(a0.isDone());
        assertEquals(List.of("alpha0", "beta0", "alpha1"), sink.calls);
        sink.pending.get(1).complete(Map.of());
        assertFalse(flush.isDone());
        assertEquals(List.of("alpha0", "beta0", "alpha1"), sink.calls, "the flush went before alpha1 was accepted");
        sink.pending.get(2).complete(Map.of());
        assertTrue(a1.isDone() && b0.isDone());
        assertEquals(List.of("alpha0", "beta0", "alpha1", "flush"), sink.calls);
        assertFalse(g0.isDone());
        sink.flushes.get(0).complete(Map.of());
        assertEquals(List.of("alpha0", "beta0", "alpha1", "flush", "gamma0"), sink.calls);
        CompletableFuture<?> b1 = s.accept(batch("beta", 1)); // after the flush: at once, gamma0 still pending
        assertEquals(List.of("alpha0", "beta0", "alpha1", "flush", "gamma0", "beta1"), sink.calls);
        assertFalse(b1.isDone());
    }
}
