// Validates every keda.sh/v1alpha1 document of the files given; exit 1 on any failure.
import fs from 'fs';
import YAML from 'yaml';
import * as keda from '@kubernetes-models/keda/keda.sh/v1alpha1';

let rc = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of YAML.parseAllDocuments(fs.readFileSync(file, 'utf8'))) {
    const o = doc.toJS();
    if (!o || o.apiVersion !== 'keda.sh/v1alpha1') continue;
    const Kind = keda[o.kind];
    if (!Kind) { rc = 1; console.log(`FAIL ${file}: unknown KEDA kind ${o.kind}`); continue; }
    try { new Kind(o).validate(); console.log(`ok   ${file}: ${o.kind}/${o.metadata.name}`); }
    catch (e) { rc = 1; console.log(`FAIL ${file}: ${o.kind}/${o.metadata.name}: ${e.message}`); }
  }
}
process.exit(rc);
