#import "FBBenchJob.h"

#include <exception>
#include <string>

#include "bench_core.h"

static NSString *FBString(const std::string &s) {
  // Program paths or error text could in principle hold invalid UTF-8; never return nil.
  NSString *out = [NSString stringWithUTF8String:s.c_str()];
  return out ?: [[NSString alloc] initWithBytes:s.data() length:s.size()
                                       encoding:NSISOLatin1StringEncoding];
}

@implementation FBBenchJob

+ (int)runManifestAtPath:(NSString *)manifestPath
              resultPath:(NSString *)resultPath
                     log:(void (^)(NSString *line))log
            fatalMessage:(NSString *_Nullable *_Nullable)fatalMessage {
  try {
    fbnet_bench::Manifest manifest = fbnet_bench::load_manifest(manifestPath.UTF8String);
    fbnet_bench::RunOptions options;
    options.output_path = resultPath.UTF8String;
    options.log = [log](const std::string &line) { log(FBString(line)); };
    fbnet_bench::RunOutcome outcome = fbnet_bench::run_manifest(manifest, options);
    if (fatalMessage != nullptr && !outcome.fatal_error.empty()) {
      *fatalMessage = FBString(outcome.fatal_error);
    }
    return outcome.exit_code;
  } catch (const std::exception &e) {  // ManifestError, or out of memory
    if (fatalMessage != nullptr) *fatalMessage = FBString(e.what());
    return fbnet_bench::kExitBadInput;
  }
}

+ (NSString *)executorchVersion {
  return FBString(fbnet_bench::executorch_version());
}

@end
