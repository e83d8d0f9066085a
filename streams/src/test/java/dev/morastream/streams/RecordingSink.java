package dev.morastream.streams;

import dev.morastream.models.tokenizer.ByteTokenizer;
import dev.morastream.streams.pack.PackedBatch;
import dev.morastream.streams.pack.ResumePoint;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.Executor;
import org.apache.kafka.common.TopicPartition;

/**
 * A test trainer: "trains" on a batch by keeping its tokens, "checkpoints" every {@code every}
 * batches (tokens and resume points together, atomically), and forgets what is not checkpointed on
 * {@link #crash()}. The records it learnt are read back from its token streams (BOS … EOS, byte
 * tokenizer), never from the batches' metadata, so the check is end to end.
 */
final class RecordingSink implements BatchSink {
    private final int every;
    private final Map<String, List<Integer>> durableTokens = new HashMap<>();
    private final Map<String, List<Integer>> pendingTokens = new HashMap<>();
    private final Map<String, Map<TopicPartition, ResumePoint>> checkpoint = new HashMap<>();
    private final Map<String, Integer> sinceCheckpoint = new HashMap<>();
    /** Per domain, the resume points of its last batch accepted (what a checkpoint now would hold). */
    private final Map<String, Map<TopicPartition, ResumePoint>> lastResume = new HashMap<>();
    private long flushes;
    private final List<Waiter> waiters = new ArrayList<>();
    private long batches;
    private long recordsSeen;

    private record Waiter(long batches, long records, CompletableFuture<Void> done) {}

    /** Completes {@link #accept} on this executor (a trainer that takes a while), or at once when {@code null}. */
    private final Executor completion;
    private final Set<TopicPartition> partitions = new HashSet<>();
    private final Set<TopicPartition> partitionsSinceMark = new HashSet<>();

    RecordingSink(int every) {
        this(every, null);
    }

    RecordingSink(int every, Executor completion) {
        this.every = every;
        this.completion = completion;
    }

    @Override
    public synchronized CompletionStage<Map<TopicPartition, Long>> accept(PackedBatch b) {
        List<Integer> pending = pendingTokens.computeIfAbsent(b.domain(), d -> new ArrayList<>());
        int[][] tokens = b.batch().tokens();
        for (int i = 0; i < tokens.length; i++) {
            for (int j = 0; j < tokens[i].length; j++) {
                if (tokens[i][j] != ByteTokenizer.PAD) {
                    pending.add(tokens[i][j]);
                }
            }
        }
        batches++;
        recordsSeen += b.completedIds().size();
        lastResume.put(b.domain(), b.resume());
        partitions.addAll(b.ranges().keySet());
        partitionsSinceMark.addAll(b.ranges().keySet());
        Map<TopicPartition, Long> durable = Map.of();
        int n = sinceCheckpoint.merge(b.domain(), 1, Integer::sum);
        if (n >= every) {
            checkpoint(b.domain());
            durable = b.resumeOffsets();
        }
        waiters.removeIf(w -> {
            if (batches >= w.batches && recordsSeen >= w.records) {
                w.done.complete(null);
                return true;
            }
            return false;
        });
        if (completion == null) {
            return CompletableFuture.completedFuture(durable);
        }
        Map<TopicPartition, Long> d = durable;
        return CompletableFuture.supplyAsync(() -> d, completion);
    }

    /** The partitions of the records in the batches accepted so far. */
    synchronized Set<TopicPartition> partitions() {
        return Set.copyOf(partitions);
    }

    /** Starts counting {@link #partitionsSinceMark} again. */
    synchronized void mark() {
        partitionsSinceMark.clear();
    }

    /** The partitions of the records in the batches accepted since {@link #mark}. */
    synchronized Set<TopicPartition> partitionsSinceMark() {
        return Set.copyOf(partitionsSinceMark);
    }

    private void checkpoint(String domain) {
        durableTokens.computeIfAbsent(domain, d -> new ArrayList<>()).addAll(pendingTokens.getOrDefault(domain, List.of()));
        pendingTokens.remove(domain);
        checkpoint.put(domain, lastResume.get(domain));
        sinceCheckpoint.put(domain, 0);
    }

    /** Checkpoints every domain now; reports each domain's offsets, as {@link #accept} does. */
    @Override
    public synchronized CompletionStage<Map<String, Map<TopicPartition, Long>>> flush() {
        flushes++;
        Map<String, Map<TopicPartition, Long>> durable = new HashMap<>();
        lastResume.forEach((domain, resume) -> {
            checkpoint(domain);
            Map<TopicPartition, Long> offsets = new HashMap<>();
            resume.forEach((tp, p) -> offsets.put(tp, p.offset()));
            durable.put(domain, offsets);
        });
        return CompletableFuture.completedFuture(durable);
    }

    /** How many times {@link #flush} was called. */
    synchronized long flushes() {
        return flushes;
    }

    /** Batches accepted so far. */
    synchronized long batches() {
        return batches;
    }

    /** Records completed in the batches accepted so far (since creation or the last crash). */
    synchronized long records() {
        return recordsSeen;
    }

    /** Completes once this many batches more have been accepted. */
    synchronized CompletableFuture<Void> afterBatches(long more) {
        CompletableFuture<Void> f = new CompletableFuture<>();
        waiters.add(new Waiter(batches + more, 0, f));
        return f;
    }

    /** Completes once batches holding the ends of this many records (in all, since creation) were accepted. */
    synchronized CompletableFuture<Void> afterRecords(long records) {
        CompletableFuture<Void> f = new CompletableFuture<>();
        if (recordsSeen >= records) {
            f.complete(null);
        } else {
            waiters.add(new Waiter(0, records, f));
        }
        return f;
    }

    /** The trainer dies: what was not checkpointed is gone. */
    synchronized void crash() {
        pendingTokens.clear();
        sinceCheckpoint.clear();
        lastResume.clear();
        waiters.clear();
        recordsSeen = 0;
    }

    /** The resume points of the last checkpoint of every domain. */
    synchronized Map<String, Map<TopicPartition, ResumePoint>> checkpoint() {
        Map<String, Map<TopicPartition, ResumePoint>> m = new HashMap<>();
        checkpoint.forEach((d, p) -> m.put(d, Map.copyOf(p)));
        return m;
    }

    /**
     * Texts of the records learnt per domain (checkpointed, then pending), in training order.
     *
     * @param complete the last record must be complete (else it is left out: a checkpoint may end inside one)
     */
    synchronized Map<String, List<String>> texts(boolean complete) {
        Map<String, List<String>> out = new HashMap<>();
        for (String d : union()) {
            List<Integer> all = new ArrayList<>(durableTokens.getOrDefault(d, List.of()));
            all.addAll(pendingTokens.getOrDefault(d, List.of()));
            out.put(d, split(all, complete));
        }
        return out;
    }

    private List<String> union() {
        List<String> d = new ArrayList<>(durableTokens.keySet());
        pendingTokens.keySet().stream().filter(k -> !d.contains(k)).forEach(d::add);
        return d;
    }

    /** BOS text EOS BOS text EOS … to the texts; a record cut short or framed wrongly fails. */
    static List<String> split(List<Integer> tokens, boolean complete) {
        List<String> texts = new ArrayList<>();
        ByteArrayOutputStream cur = null;
        for (int t : tokens) {
            if (t == ByteTokenizer.BOS) {
                if (cur != null) {
                    throw new AssertionError("BOS inside a record after " + texts.size() + " records: "
                            + cur.toString(StandardCharsets.UTF_8) + " | last: " + (texts.isEmpty() ? "" : texts.get(texts.size() - 1)));
                }
                cur = new ByteArrayOutputStream();
            } else if (t == ByteTokenizer.EOS) {
                if (cur == null) {
                    throw new AssertionError("EOS outside a record after " + texts.size() + " records");
                }
                texts.add(cur.toString(StandardCharsets.UTF_8));
                cur = null;
            } else {
                if (cur == null) {
                    throw new AssertionError("token " + t + " outside a record after " + texts.size() + " records");
                }
                cur.write(t);
            }
        }
        if (cur != null && complete) {
            throw new AssertionError("the last record is cut short after " + texts.size() + " records");
        }
        return texts;
    }
}
