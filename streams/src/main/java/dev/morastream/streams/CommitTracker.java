package dev.morastream.streams;

import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;

/**
 * Turns the durable offsets of each domain's checkpoint into Kafka commits. The offset committed
 * for a partition is the minimum over the domains seen of the offset each has made durable (a
 * domain that has made nothing durable yet holds it at where this consumer's ownership of the
 * partition started), so a record of a slower domain is never skipped by another domain's
 * progress. The domains further on are named in the commit's metadata ({@link #metadata}), so the
 * next owner of the partition resumes each of them where it stopped.
 *
 * <p>State is per ownership: {@link #assign} starts it (at the offset the consumer seeks to),
 * {@link #handOver} ends it. Durable offsets below the start (reported late for an earlier
 * ownership) are ignored, and a commit never goes below the start. Thread-safe: the stream records
 * from one stage, the trainer's completions report durable offsets, the rebalance callbacks hand
 * partitions over.
 */
final class CommitTracker {
    /** The prefix of the commit metadata this tracker writes and reads. */
    static final String METADATA_PREFIX = "morastream/1";
    /** Kafka's default {@code offset.metadata.max.bytes} is 4096; beyond this the metadata is left out. */
    private static final int MAX_METADATA = 3_000;

    /** What one ownership of a partition has reached. */
    private static final class Owned {
        final long ownership;
        /** The offset this ownership started at (the seek), or -1 until the first record when unknown. */
        long start;
        /** Per domain, the durable offset (next to read). */
        final Map<String, Long> durable = new HashMap<>();
        /** The offset last asked to commit (next to read). */
        long committed;

        Owned(long ownership, long start) {
            this.ownership = ownership;
            this.start = start;
            this.committed = start;
        }
    }

    /** An offset to commit for the ownership that reached it. */
    record Commit(long offset, String metadata, long ownership) {
        OffsetAndMetadata toKafka() {
            return new OffsetAndMetadata(offset, metadata);
        }
    }

    private final Map<TopicPartition, Owned> owned = new HashMap<>();
    private final Set<String> domains = new HashSet<>();

    /**
     * This consumer now owns {@code tp} (ownership {@code ownership}), starting at {@code start}
     * ({@code null}: unknown, the first record read), each domain of {@code resume} having absorbed
     * everything before its offset (so a hand-over before it trains anything keeps those positions).
     */
    synchronized void assign(TopicPartition tp, long ownership, Long start, Map<String, Long> resume) {
        Owned o = new Owned(ownership, start == null ? -1 : start);
        if (start != null) {
            resume.forEach((d, off) -> {
                if (off >= start) {
                    o.durable.put(d, off);
                }
            });
        }
        owned.put(tp, o);
    }

    synchronized void record(TopicPartition tp, long offset, String domainOrNull) {
        Owned o = owned.get(tp);
        if (o != null && o.start < 0) {
            o.start = offset;
            o.committed = offset;
        }
        if (domainOrNull != null) {
            domains.add(domainOrNull);
        }
    }

    /** Notes what {@code domain} made durable; returns the commits that became possible. */
    synchronized Map<TopicPartition, Commit> durable(String domain, Map<TopicPartition, Long> next) {
        domains.add(domain);
        next.forEach((tp, off) -> {
            Owned o = owned.get(tp);
            if (o != null && o.start >= 0 && off >= o.start) {
                o.durable.merge(domain, off, Math::max);
            }
        });
        Map<TopicPartition, Commit> commits = new HashMap<>();
        owned.forEach((tp, o) -> {
            Commit c = commitOf(o);
            if (c != null && c.offset() > o.committed) {
                o.committed = c.offset();
                commits.put(tp, c);
            }
        });
        return commits;
    }

    /**
     * Ends the ownership of {@code tps}: returns, for those where it started somewhere, the commit
     * that hands them over (what every domain made durable), and forgets them.
     */
    synchronized Map<TopicPartition, Commit> handOver(Set<TopicPartition> tps) {
        Map<TopicPartition, Commit> out = new HashMap<>();
        for (TopicPartition tp : tps) {
            Owned o = owned.remove(tp);
            Commit c = o == null ? null : commitOf(o);
            if (c != null) {
                out.put(tp, c);
            }
        }
        return out;
    }

    /** Forgets {@code tps} without committing (partitions lost). */
    synchronized void forget(Set<TopicPartition> tps) {
        owned.keySet().removeAll(tps);
    }

    private Commit commitOf(Owned o) {
        if (o.start < 0) {
            return null;
        }
        long min = Long.MAX_VALUE;
        for (String d : domains) {
            min = Math.min(min, o.durable.getOrDefault(d, o.start));
        }
        if (min == Long.MAX_VALUE) {
            min = o.start; // no domain seen yet: nothing read
        }
        Map<String, Long> ahead = new TreeMap<>();
        for (Map.Entry<String, Long> e : o.durable.entrySet()) {
            if (e.getValue() > min) {
                ahead.put(e.getKey(), e.getValue());
            }
        }
        return new Commit(min, metadata(ahead), o.ownership);
    }

    /**
     * {@code morastream/1 law=150 med=120}: the domains whose durable offset is beyond the committed
     * one. Empty when none is, or when a domain's name cannot be written unambiguously, or when it
     * would be too long (then the next owner retrains those domains from the committed offset).
     */
    static String metadata(Map<String, Long> ahead) {
        if (ahead.isEmpty()) {
            return "";
        }
        StringBuilder b = new StringBuilder(METADATA_PREFIX);
        for (Map.Entry<String, Long> e : ahead.entrySet()) {
            String d = e.getKey();
            if (d.isEmpty() || d.chars().anyMatch(ch -> ch == '=' || Character.isWhitespace(ch))) {
                return "";
            }
            b.append(' ').append(d).append('=').append(e.getValue());
        }
        return b.length() > MAX_METADATA ? "" : b.toString();
    }

    /** The per-domain offsets in a commit's metadata (empty when it holds none, or is not ours). */
    static Map<String, Long> parseMetadata(String metadata) {
        Map<String, Long> m = new HashMap<>();
        if (metadata == null || !metadata.startsWith(METADATA_PREFIX + " ")) {
            return m;
        }
        for (String part : metadata.substring(METADATA_PREFIX.length()).trim().split(" ")) {
            int eq = part.lastIndexOf('=');
            if (eq > 0) {
                try {
                    m.put(part.substring(0, eq), Long.parseLong(part.substring(eq + 1)));
                } catch (NumberFormatException e) {
                    return new HashMap<>(); // not ours after all
                }
            }
        }
        return m;
    }
}
