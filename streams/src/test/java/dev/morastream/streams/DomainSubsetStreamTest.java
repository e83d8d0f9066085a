package dev.morastream.streams;

import static dev.morastream.streams.StreamTestSupport.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.models.tokenizer.ByteTokenizer;
import dev.morastream.streams.records.DeadLetterTopic;
import dev.morastream.streams.records.DeadLetters;
import dev.morastream.streams.records.RecordDecoder;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.pekko.Done;
import org.apache.pekko.kafka.javadsl.Consumer;
import org.junit.jupiter.api.Test;

/**
 * Streams that train a subset of the domains, one consumer group each (how a cluster spreads the
 * domains of one topic over its nodes): together they train every record once, each group's commits
 * reach the end of the topic, and exactly one of them dead-letters what is rejected.
 */
class DomainSubsetStreamTest extends PlainBrokerTestBase {
    private static final Duration WAIT = Duration.ofSeconds(60);
    private static final RecordDecoder.Config DECODER = new RecordDecoder.Config(Set.of("law", "med"), null, 1 << 16);

    private TrainingStream.Settings settings(String topic, String group, Set<String> trained, boolean letters) {
        return new TrainingStream.Settings(kafka.bootstrapServers(), Map.of(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "100"),
                group, Set.of(topic), DECODER, 31, 2, 4, Duration.ofMillis(200), trained, letters);
    }

    private DeadLetters deadLetters(String dlq, String group) {
        DeadLetters dl = DeadLetters.create(Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers()), dlq, group);
        toClose.add(dl);
        return dl;
    }

    /** Produces {@code n} records alternating law and med over 2 partitions, every 10th one of an unknown domain. */
    private static Map<String, List<String>> produce(String topic, int from, int n) throws Exception {
        Map<String, List<String>> ids = new HashMap<>();
        for (int i = from; i < from + n; i++) {
            String domain = i % 10 == 9 ? "nowhere" : i % 2 == 0 ? "law" : "med";
            String id = domain + "-" + i;
            ids.computeIfAbsent(domain, d -> new ArrayList<>()).add(id);
            producer.send(new ProducerRecord<>(topic, i % 2, domain.getBytes(StandardCharsets.UTF_8),
                    ("[" + id + "] text of record " + i).getBytes(StandardCharsets.UTF_8))).get();
        }
        return ids;
    }

    private static List<String> trainedIds(RecordingSink sink, String domain) {
        return sink.texts(true).getOrDefault(domain, List.of()).stream().map(TrainingStreamTest::idOf).sorted().toList();
    }

    @Test
    void twoGroupsTrainTheirOwnDomainsOnceAndOnlyOneDeadLettersTheRest() throws Exception {
        String topic = "subset";
        String dlq = "subset-dlq";
        kafka.createTopic(topic, 2);
        kafka.createTopic(dlq, 1);
        Map<String, List<String>> first = produce(topic, 0, 200);

        RecordingSink lawSink = new RecordingSink(2);
        RecordingSink medSink = new RecordingSink(2);
        StreamStats lawStats = new StreamStats();
        StreamStats medStats = new StreamStats();
        Consumer.DrainingControl<Done> law = TrainingStream.run(kit.system(), mat, settings(topic, "subset.law", Set.of("law"), true),
                new ByteTokenizer(), deadLetters(dlq, "subset.law"), lawSink, Map.of(), lawStats);
        Consumer.DrainingControl<Done> med = TrainingStream.run(kit.system(), mat, settings(topic, "subset.med", Set.of("med"), false),
                new ByteTokenizer(), deadLetters(dlq, "subset.med"), medSink, Map.of(), medStats);
        await(lawSink.afterRecords(first.get("law").size()), WAIT);
        await(medSink.afterRecords(first.get("med").size()), WAIT);

        // the med trainer stops (its domain moves to another node) and comes back from its checkpoint, while records go on
        await(med.drainAndShutdown(kit.system().executionContext()), WAIT);
        Map<String, List<String>> second = produce(topic, 200, 100);
        med = TrainingStream.run(kit.system(), mat, settings(topic, "subset.med", Set.of("med"), false),
                new ByteTokenizer(), deadLetters(dlq, "subset.med"), medSink, medSink.checkpoint(), medStats);
        int lawAll = first.get("law").size() + second.get("law").size();
        int medAll = first.get("med").size() + second.get("med").size();
        await(lawSink.afterRecords(lawAll), WAIT);
        await(medSink.afterRecords(medAll), WAIT);
        // a drain checkpoints what is trained and commits it
        await(law.drainAndShutdown(kit.system().executionContext()), WAIT);
        await(med.drainAndShutdown(kit.system().executionContext()), WAIT);
        Map<TopicPartition, Long> end = endOffsets(topic, 2);

        List<String> lawIds = new ArrayList<>(first.get("law"));
        lawIds.addAll(second.get("law"));
        List<String> medIds = new ArrayList<>(first.get("med"));
        medIds.addAll(second.get("med"));
        assertEquals(lawIds.stream().sorted().toList(), trainedIds(lawSink, "law"), "law trained once each, by its own stream");
        assertEquals(medIds.stream().sorted().toList(), trainedIds(medSink, "med"), "med trained once each, across its restart");
        assertEquals(Set.of("law"), lawSink.texts(true).keySet());
        assertEquals(Set.of("med"), medSink.texts(true).keySet());
        assertEquals(end, committed("subset.law"));
        assertEquals(end, committed("subset.med"));

        int unknown = first.get("nowhere").size() + second.get("nowhere").size();
        List<DeadLetterTopic.Letter> letters = DeadLetterTopic.read(
                Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers()), dlq, Duration.ofSeconds(30));
        assertEquals(unknown, letters.size(), "each rejected record lettered once, by the stream that letters");
        assertTrue(letters.stream().allMatch(l -> l.reason().equals("unknown-domain")));
        assertEquals(unknown, lawStats.rejected.get());
        assertEquals(0, medStats.rejected.get());
        assertTrue(medStats.rejectedNotLettered.get() >= unknown);
        assertEquals(lawAll, lawStats.recordsTrained.get());
        assertTrue(lawStats.trainedElsewhere.get() >= medAll, "the law stream passed over every med record");
        assertEquals(0, lawStats.inFlight());
        assertEquals(0, medStats.inFlight());
    }

    @Test
    void aStreamMustTrainSomeOfItsDecodersDomains() {
        IllegalArgumentException none = assertThrows(IllegalArgumentException.class, () -> settings("t", "g", Set.of(), true));
        assertTrue(none.getMessage().contains("at least one domain"), none.getMessage());
        IllegalArgumentException other = assertThrows(IllegalArgumentException.class, () -> settings("t", "g", Set.of("law", "tax"), true));
        assertTrue(other.getMessage().contains("[tax]"), other.getMessage());
        assertEquals(DECODER.domains(), new TrainingStream.Settings("b", Map.of(), "g", Set.of("t"), DECODER, 31, 2, 4, null).trained());
    }
}
