package dev.morastream.streams;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import org.apache.kafka.common.TopicPartition;
import org.apache.pekko.kafka.ConsumerMessage;

/**
 * Turns the durable offsets of each domain's checkpoint into Kafka commits. The offset committed
 * for a partition is the minimum over the domains seen of the offset each has made durable (a
 * domain that has made nothing durable yet holds it at where this run started), so a record of a
 * slower domain is never skipped by another domain's progress.
 *
 * <p>Kafka commits need a {@code CommittableOffset} of the consumer; this keeps the one of every
 * record read since the last commit of its partition. Thread-safe: the stream records from one
 * stage and commits from the trainer's completion callbacks.
 */
final class CommitTracker {
    private final Map<TopicPartition, TreeMap<Long, ConsumerMessage.CommittableOffset>> offsets = new HashMap<>();
    private final Map<TopicPartition, Long> firstSeen = new HashMap<>();
    private final Set<String> domains = new HashSet<>();
    private final Map<String, Map<TopicPartition, Long>> durable = new HashMap<>();
    private final Map<TopicPartition, Long> committed = new HashMap<>();

    synchronized void record(TopicPartition tp, long offset, ConsumerMessage.CommittableOffset committable, String domainOrNull) {
        firstSeen.putIfAbsent(tp, offset);
        offsets.computeIfAbsent(tp, t -> new TreeMap<>()).put(offset, committable);
        if (domainOrNull != null) {
            domains.add(domainOrNull);
        }
    }

    /** Notes what {@code domain} made durable; returns the commits that became possible. */
    synchronized Optional<ConsumerMessage.CommittableOffsetBatch> durable(String domain, Map<TopicPartition, Long> next) {
        domains.add(domain);
        Map<TopicPartition, Long> d = durable.computeIfAbsent(domain, x -> new HashMap<>());
        next.forEach((tp, off) -> d.merge(tp, off, Math::max));
        List<ConsumerMessage.CommittableOffset> commits = new ArrayList<>();
        for (Map.Entry<TopicPartition, TreeMap<Long, ConsumerMessage.CommittableOffset>> e : offsets.entrySet()) {
            TopicPartition tp = e.getKey();
            long start = firstSeen.get(tp);
            long min = Long.MAX_VALUE;
            for (String dom : domains) {
                min = Math.min(min, durable.getOrDefault(dom, Map.of()).getOrDefault(tp, start));
            }
            if (min == Long.MAX_VALUE || min <= committed.getOrDefault(tp, start)) {
                continue;
            }
            // the last record below the durable offset: committing it commits its offset + 1 <= min
            Map.Entry<Long, ConsumerMessage.CommittableOffset> last = e.getValue().lowerEntry(min);
            if (last == null) {
                continue;
            }
            commits.add(last.getValue());
            committed.put(tp, last.getKey() + 1);
            e.getValue().headMap(last.getKey(), true).clear();
        }
        return commits.isEmpty() ? Optional.empty() : Optional.of(ConsumerMessage.createCommittableOffsetBatch(commits));
    }

    /** The offsets committed (next to read) per partition by this run. */
    synchronized Map<TopicPartition, Long> committed() {
        return Map.copyOf(committed);
    }
}
